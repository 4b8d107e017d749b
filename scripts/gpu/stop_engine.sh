#!/usr/bin/env bash
# Stop an engine started by engine.sh: SIGTERM to its process group (API server + EngineCore), wait.
set -uo pipefail
G=${GPU_WORK:-/tmp/gpu}
pid=$(cat "$G/engine-$1.pid")
kill -TERM -- "-$pid" 2>/dev/null
for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
kill -KILL -- "-$pid" 2>/dev/null || true
echo "engine $1 stopped"
