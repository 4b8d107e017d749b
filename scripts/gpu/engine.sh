#!/usr/bin/env bash
# Start one vLLM 0.24.0 OpenAI server on one GPU, detached (setsid: it outlives the device call
# that started it, until the machine goes back). Flags as in ../shared/reference-runs (H200 run):
# --served-model-name smollm2 --max-model-len 2048 --gpu-memory-utilization 0.5,
# VLLM_USE_FLASHINFER_SAMPLER=0, the API key in VLLM_API_KEY (read from $G/key, never argv).
# usage: engine.sh NAME GPU PORT [OTLP_ENDPOINT]   (an endpoint turns tracing on)
set -euo pipefail
name=$1 gpu=$2 port=$3 otlp=${4:-}
G=${GPU_WORK:-/tmp/gpu}
mkdir -p "$G/logs"
trace=()
otel_env=()
if [ -n "$otlp" ]; then
  trace=(--otlp-traces-endpoint "$otlp" --collect-detailed-traces all)
  # the receiver speaks HTTP/protobuf only; no other signal or exporter, loopback only
  otel_env=(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none
            OTEL_TRACES_SAMPLER=always_on OTEL_BSP_SCHEDULE_DELAY=500)
fi
VLLM_API_KEY=$(cat "$G/key") env CUDA_VISIBLE_DEVICES="$gpu" PYTHONPATH="$G/site" PYTHONUNBUFFERED=1 \
  VLLM_USE_FLASHINFER_SAMPLER=0 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 \
  NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 "${otel_env[@]}" \
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$G/engine-$name.pid" \
  python3 -m vllm.entrypoints.openai.api_server --model "$G/model" --served-model-name smollm2 \
  --host 127.0.0.1 --port "$port" --max-model-len 2048 --gpu-memory-utilization 0.5 "${trace[@]}" \
  >>"$G/logs/engine-$name.log" 2>&1 </dev/null &
sleep 0.5  # the child writes its pid (the session leader's: stop_engine.sh signals that group)
date -u +%FT%T.%NZ >"$G/engine-$name.started"
echo "engine $name: pid $(cat "$G/engine-$name.pid") gpu $gpu port $port ${otlp:+traced}"
