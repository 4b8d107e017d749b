#!/usr/bin/env bash
# Device call 1 of the measurements (after the payload pieces are staged in $G/pieces):
# unpack, start both engines (e0: GPU 0 port 8000 untraced; e1: GPU 1 port 8001 traced to the
# OTLP sink on 4318), run the span check ([M] item 2) on e1, then restart GPU 1's engine untraced
# (e1u, port 8001) so both replicas of the capacity check run alike. Collects c1.tgz into $OUT.
set -uo pipefail
export GPU_WORK=${GPU_WORK:-/tmp/gpu}
G=$GPU_WORK S=$(cd "$(dirname "$0")" && pwd)
trap '"$S/collect.sh" c1 host.txt payload.sha256 spans gpu.csv health.txt' EXIT
"$S/setup.sh" || exit 1
mkdir -p "$G/out/spans"
PYTHONPATH="$G/site" setsid python3 "$S/otlp_sink.py" 4318 "$G/out/spans/spans.otlp.jsonl" \
  >"$G/logs/otlp-sink.log" 2>&1 </dev/null &
"$S/engine.sh" e0 0 8000
"$S/engine.sh" e1 1 8001 http://127.0.0.1:4318/v1/traces
health() { python3 -c "import sys; sys.path.insert(0, '$S'); import common; print('$1', common.wait_health(sys.argv[1:], $2))" "${@:3}" | tee -a "$G/out/health.txt"; }
ENGINES="e0 e1" health start-e0-e1 420 http://127.0.0.1:8000 http://127.0.0.1:8001 || exit 1
python3 "$S/spans_check.py" http://127.0.0.1:8001 "$G/out/spans/spans.otlp.jsonl" "$G/out/spans" 16 4 30
echo "spans_check rc=$?"
cat "$G/out/spans/spans.otlp.status.json"
"$S/stop_engine.sh" e1
"$S/engine.sh" e1u 1 8001
ENGINES=e1u health restart-e1u 300 http://127.0.0.1:8001
