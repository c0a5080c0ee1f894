#!/bin/sh
# Refuse to start a container whose secrets are missing, still the shipped placeholders
# (REPLACE_ME... in deploy/env.example and deploy/k8s/11-secret.yaml), short or guessable.
# Compose's ${VAR:?} only rejects an empty value, and a placeholder secret lets anyone who has
# read this repository forge session cookies, join tokens and TURN credentials.
#
#   require-secrets.sh NAME... [-- COMMAND [ARG...]]
#
# Checks the environment variable NAME of each argument, prints one line per refused variable
# on stderr and exits 78 (EX_CONFIG) if any is refused; otherwise it runs COMMAND in its place.
# compose.yaml and the Kubernetes manifests put it in front of inspectd, PostgreSQL, Redis and
# coturn (coturn/start.sh calls it). Values are read from the environment by awk, never from the
# command line, so they do not show in the process list.
#
# Refused: unset or empty; containing REPLACE_ME or CHANGEME; under 32 characters; anything but
# printable ASCII (coturn/start.sh writes the secret into a config file line); fewer than
# 8 distinct characters; a repeated block ("abcabc..."); mostly runs of equal or consecutive
# characters ("aabbcc...", "abcdef..."). `openssl rand -hex 32` (64 characters) passes all of
# these; a random 32-character hex value fails the last three with a probability below 1e-6.
set -eu

usage() {
  echo "usage: require-secrets.sh NAME... [-- COMMAND [ARG...]]" >&2
  exit 64
}

refused=0
checked=0
while [ "$#" -gt 0 ]; do
  name="$1"
  shift
  [ "$name" = "--" ] && break
  checked=$((checked + 1))
  case "$name" in
    "" | [0-9]* | *[!A-Za-z0-9_]*) usage ;;
  esac
  reason="$(
    LC_ALL=C awk -v name="$name" 'BEGIN {
      v = ENVIRON[name]
      n = length(v)
      if (n == 0) { print "is not set or empty"; exit }
      folded = tolower(v)
      gsub(/[-_]/, "", folded)
      if (index(folded, "replaceme") || index(folded, "changeme")) {
        print "still holds a placeholder (REPLACE_ME or CHANGEME)"; exit
      }
      if (n < 32) { print "is " n " characters long, fewer than 32"; exit }
      # Printable ASCII only; this also refuses white space, control and non-ASCII bytes.
      for (i = 33; i < 127; i++) code[sprintf("%c", i)] = i
      for (i = 1; i <= n; i++) {
        if (!(substr(v, i, 1) in code)) {
          print "contains white space, control or non-ASCII characters"; exit
        }
      }
      distinct = 0
      runs = 0
      for (i = 1; i <= n; i++) {
        c = substr(v, i, 1)
        if (!(c in seen)) { seen[c] = 1; distinct++ }
        if (i > 1) {
          d = code[c] - code[substr(v, i - 1, 1)]
          if (d >= -1 && d <= 1) runs++
        }
      }
      if (distinct < 8) { print "has " distinct " distinct characters, fewer than 8 (too little entropy)"; exit }
      for (p = 1; p <= n / 2; p++) {
        if (substr(v, 1, n - p) == substr(v, p + 1)) {
          print "repeats a block of " p " characters (too little entropy)"; exit
        }
      }
      if (runs * 4 >= (n - 1) * 3) {
        print "is mostly runs of equal or consecutive characters (too little entropy)"; exit
      }
    }'
  )"
  if [ -n "$reason" ]; then
    echo "refusing to start: $name $reason; set it to the output of \`openssl rand -hex 32\`" >&2
    refused=1
  fi
done
# Naming no variable is a mistake in the caller, not a pass.
[ "$checked" -gt 0 ] || usage
[ "$refused" -eq 0 ] || exit 78
[ "$#" -eq 0 ] || exec "$@"
