#!/bin/sh
# Start coturn with deploy/coturn/turnserver.conf plus the values that must not live in it:
# the shared secret (the same value inspectd reads as INSPECT_TURN_SECRET), the realm, behind
# 1:1 NAT (most clouds) the public address, and the operator's own media hosts that the relay
# may reach although turnserver.conf denies their private range. Extra arguments go to
# turnserver. The containers mount this file at /etc/inspectd-deploy/coturn/start.sh and
# deploy/require-secrets.sh beside its folder, as in this repository.
set -euf
here="$(dirname "$0")"
# A placeholder, short or guessable secret lets anyone mint TURN credentials: refuse it before
# anything is written (require-secrets.sh names TURN_SECRET and exits 78).
sh "$here/../require-secrets.sh" TURN_SECRET
: "${TURN_REALM:?TURN_REALM must name the realm (your public host name)}"
# TURN_ALLOWED_PEER_IPS: addresses or ranges (A or A-B, IPv4 or IPv6), separated by spaces or
# commas, each appended as allowed-peer-ip, which wins over denied-peer-ip. Only address
# characters pass, so that no value can add other lines to the config.
allowed="$(printf '%s' "${TURN_ALLOWED_PEER_IPS:-}" | tr ',' ' ')"
for entry in $allowed; do
  case "$entry" in
    *[!0-9A-Fa-f:.-]* | -* | *- | *-*-*)
      echo "refusing to start: TURN_ALLOWED_PEER_IPS entry '$entry' is not an address or an A-B range" >&2
      exit 78
      ;;
  esac
done
conf="${TMPDIR:-/tmp}/turnserver.conf"
umask 077
cp "$here/turnserver.conf" "$conf"
printf 'static-auth-secret=%s\nrealm=%s\n' "$TURN_SECRET" "$TURN_REALM" >> "$conf"
if [ -n "${TURN_EXTERNAL_IP:-}" ]; then
  printf 'external-ip=%s\n' "$TURN_EXTERNAL_IP" >> "$conf"
fi
for entry in $allowed; do
  printf 'allowed-peer-ip=%s\n' "$entry" >> "$conf"
done
exec turnserver -c "$conf" "$@"
