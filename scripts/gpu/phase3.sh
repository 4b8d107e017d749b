#!/usr/bin/env bash
# Device call: max sustainable rate of TWO replicas (e0 GPU 0, e1u GPU 1) behind nginx round
# robin; start rate 2x the single search's so both walk the same grid. Resumable. c3.tgz, with
# nvidia-smi -q -x (serial and UUID redacted) at the end.
set -uo pipefail
export GPU_WORK=${GPU_WORK:-/tmp/gpu}
G=$GPU_WORK S=$(cd "$(dirname "$0")" && pwd)
trap 'nvidia-smi -q -x | sed -E "s#<(serial|uuid)>[^<]*#<\1>redacted#" >"$G/out/nvidia-smi-q.xml"; "$S/collect.sh" c3 msr-double gpu.csv nvidia-smi-q.xml' EXIT
[ -f "$G/nginx-two/nginx.pid" ] || "$S/lb.sh" two 8080 8000 8001 || exit 1
python3 "$S/msr.py" double http://127.0.0.1:8080 --metrics http://127.0.0.1:8000/metrics \
  --metrics http://127.0.0.1:8001/metrics --start-rate "${START_RATE:-200}" --vus "${VUS:-3000}" \
  --deadline-s "${DEADLINE_S:-540}"
echo "msr double rc=$?"
