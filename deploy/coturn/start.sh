#!/bin/sh
# Start coturn with deploy/coturn/turnserver.conf plus the values that must not live in it:
# the shared secret (the same value inspectd reads as INSPECT_TURN_SECRET), the realm and,
# behind 1:1 NAT (most clouds), the public address. Extra arguments go to turnserver.
set -eu
: "${TURN_SECRET:?TURN_SECRET must hold the shared secret (INSPECT_TURN_SECRET of inspectd)}"
: "${TURN_REALM:?TURN_REALM must name the realm (your public host name)}"
here="$(dirname "$0")"
conf="${TMPDIR:-/tmp}/turnserver.conf"
umask 077
cp "$here/turnserver.conf" "$conf"
printf 'static-auth-secret=%s\nrealm=%s\n' "$TURN_SECRET" "$TURN_REALM" >> "$conf"
if [ -n "${TURN_EXTERNAL_IP:-}" ]; then
  printf 'external-ip=%s\n' "$TURN_EXTERNAL_IP" >> "$conf"
fi
exec turnserver -c "$conf" "$@"
