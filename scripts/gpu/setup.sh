#!/usr/bin/env bash
# On the GPU host: unpack the payload pieces staged in $G/pieces (see pack.sh) into $G, unpack the
# nginx .debs into $G/nginx-root (not into /), make the API key, start the nvidia-smi log, and
# record the host. Idempotent: a second run skips what is done.
set -euo pipefail
G=${GPU_WORK:-/tmp/gpu}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$G/out" "$G/logs"
if [ ! -f "$G/.unpacked" ]; then
  t0=$(date +%s)
  cat "$G"/pieces/payload.part.* | sha256sum | tee "$G/out/payload.sha256"
  if command -v xz >/dev/null; then unxz=(xz -dc -T0); else unxz=(python3 "$here/unxz.py"); fi
  cat "$G"/pieces/payload.part.* | "${unxz[@]}" | tar -x -i -C "$G"
  for d in "$G"/debs/*.deb; do
    if command -v dpkg >/dev/null; then dpkg -x "$d" "$G/nginx-root"; else python3 "$here/undeb.py" "$d" "$G/nginx-root"; fi
  done
  rm -rf "$G/pieces"
  touch "$G/.unpacked"
  echo "unpacked in $(( $(date +%s) - t0 )) s"
fi
[ -f "$G/key" ] || (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$G/key")
if [ ! -f "$G/smi.pid" ]; then
  setsid bash -c 'echo $$ >"$0"; exec nvidia-smi --query-gpu=timestamp,index,name,utilization.gpu,utilization.memory,memory.used,memory.total,temperature.gpu,power.draw,clocks.sm --format=csv -l 1' \
    "$G/smi.pid" >"$G/out/gpu.csv" 2>"$G/logs/nvidia-smi.err" </dev/null &
fi
{
  echo "date_utc: $(date -u +%FT%TZ)"; echo "tz_offset: $(date +%z)"; echo "uname: $(uname -r)"
  echo "cpus: $(nproc)"; grep MemTotal /proc/meminfo
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv
  python3 -c 'import sys, torch, transformers; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "gpus", torch.cuda.device_count())'
  PYTHONPATH="$G/site" python3 -c 'import importlib.metadata as m; print("vllm", m.version("vllm"), "opentelemetry-sdk", m.version("opentelemetry-sdk"))'
  "$G/bin/k6" version
} | tee "$G/out/host.txt"
