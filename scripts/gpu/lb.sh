#!/usr/bin/env bash
# Start nginx (daemon) on 127.0.0.1:PORT balancing round-robin over the given upstream ports.
# usage: lb.sh NAME PORT UPSTREAM_PORT...   (config, pid and temp files under $G/nginx-NAME)
set -euo pipefail
G=${GPU_WORK:-/tmp/gpu}
name=$1 port=$2; shift 2
D="$G/nginx-$name"
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$D/tmp" "$G/logs"
ups=""
for p in "$@"; do ups+="        server 127.0.0.1:$p;"$'\n'; done
sed -e "s#@D@#$D#g" -e "s#@G@#$G#g" -e "s#@NAME@#$name#g" -e "s#@PORT@#$port#g" "$here/nginx.conf.in" | awk -v u="$ups" '{ if ($0 ~ /@UPSTREAMS@/) printf "%s", u; else print }' >"$D/nginx.conf"
bin="$G/nginx-root/usr/sbin/nginx"
# the host's own libssl/libpcre2 first; the .debs' copies only if the binary cannot find one
if ! "$bin" -v 2>/dev/null; then export LD_LIBRARY_PATH="$G/nginx-root/usr/lib/x86_64-linux-gnu:$G/nginx-root/lib/x86_64-linux-gnu"; fi
"$bin" -v
"$bin" -t -p "$D" -c "$D/nginx.conf" -e "$G/logs/nginx-$name-error.log"
"$bin" -p "$D" -c "$D/nginx.conf" -e "$G/logs/nginx-$name-error.log"
echo "nginx $name on 127.0.0.1:$port -> $*"
