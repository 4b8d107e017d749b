#!/usr/bin/env bash
# Device call: max sustainable rate of ONE replica (e0, GPU 0) through nginx (one upstream), so
# the one- and two-replica runs differ only in the replica count. Resumable (msr.py). c2.tgz.
set -uo pipefail
export GPU_WORK=${GPU_WORK:-/tmp/gpu}
G=$GPU_WORK S=$(cd "$(dirname "$0")" && pwd)
trap '"$S/collect.sh" c2 msr-single gpu.csv' EXIT
[ -f "$G/nginx-one/nginx.pid" ] || "$S/lb.sh" one 8081 8000 || exit 1
python3 "$S/msr.py" single http://127.0.0.1:8081 --metrics http://127.0.0.1:8000/metrics \
  --start-rate "${START_RATE:-100}" --vus "${VUS:-1500}" --deadline-s "${DEADLINE_S:-540}"
echo "msr single rc=$?"
