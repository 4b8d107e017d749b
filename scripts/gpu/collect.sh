#!/usr/bin/env bash
# Bundle outputs for the trip back: $G/out/PATH... plus redacted copies of every log in $G/logs,
# as $OUT/TAG.tgz (split into 15 MiB parts TAG.tgz.partNN when larger: at most 16 MiB a file).
# The API key is replaced by <redacted> in every log copy.
# usage: collect.sh TAG PATH...   (paths relative to $G/out)
set -euo pipefail
G=${GPU_WORK:-/tmp/gpu}
tag=$1; shift
key=$(cat "$G/key")
mkdir -p "$G/out/logs"
for f in "$G"/logs/*; do [ -f "$f" ] && sed "s#$key#<redacted>#g" "$f" >"$G/out/logs/$(basename "$f")"; done
grep -rl -- "$key" "$G/out" && { echo "key found in outputs: not collecting" >&2; exit 1; }
tar -C "$G/out" -czf "$G/$tag.tgz" logs "$@"
if [ "$(stat -c %s "$G/$tag.tgz")" -gt $((15 << 20)) ]; then
  split -b 15m -d -a 2 "$G/$tag.tgz" "$OUT/$tag.tgz.part"
else
  cp "$G/$tag.tgz" "$OUT/"
fi
ls -la "$OUT"
