#!/usr/bin/env bash
# Here: the wheels vLLM 0.24.0 and inferlab itself (EXTRA_REQS, default inferlab-runtime.txt beside
# this file) need that the GPU image lacks, downloaded into WHEELS_DIR and installed into SITE_DIR for
# pack.sh (pip --target with the device's platform and Python 3.12). Both are resolved in ONE pip
# run, so the site holds one version of each package (two stop the device's import).
# How the list is found: pip resolves vllm==0.24.0 (`--dry-run --report`) with tiny local stub
# wheels standing in for the heavy pins the image already has or that this setup does not use
# (torch, torchaudio, torchvision, triton, numba; flashinfer and the other GPU-kernel packages:
# VLLM_USE_FLASHINFER_SAMPLER=0), so nothing big is downloaded; then the packages the image already
# has (KINDS.md's list, IMAGE_PACKAGES) and a few unused CLI/kernel extras are dropped.
# apache-tvm-ffi is NOT optional: xgrammar imports tvm_ffi at vLLM's start (the first session's
# first start died on it), so it is added back here.
# usage: wheels.sh VLLM_WHEEL IMAGE_PACKAGES_FILE WHEELS_DIR SITE_DIR [EXTRA_REQS]
#        (IMAGE_PACKAGES_FILE: scripts/gpu/image-packages.txt, KINDS.md's list, one name a line)
set -euo pipefail
vllm_whl=$1 image=$2 wheels=$3 site=$4 extra=${5:-$(dirname "$0")/inferlab-runtime.txt}
work=$(mktemp -d)
plat=(--python-version 3.12 --implementation cp --only-binary=:all:)
for n in 28 27 26 24 17 5 31 34 35; do plat+=(--platform "manylinux_2_${n}_x86_64"); done
plat+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 - "$work/stubs" <<'PY'
import os, sys, zipfile
out = sys.argv[1]; os.makedirs(out)
for spec in ("torch==2.11.0 torchaudio==2.11.0 torchvision==0.26.0 triton==3.6.0 numba==0.65.0 "
             "flashinfer-python==0.6.12 flashinfer-cubin==0.6.12 apache-tvm-ffi==0.1.9 tilelang==0.1.9 "
             "nvidia-cutlass-dsl==4.5.2 humming-kernels==0.1.6 tokenspeed-mla==0.1.2 quack-kernels==0.3.3 "
             "fastsafetensors==0.3.2 nvidia-cudnn-frontend==1.19.1").split():
    name, ver = spec.split("=="); dn = name.replace("-", "_"); ver += "+stub"; di = f"{dn}-{ver}.dist-info"
    with zipfile.ZipFile(f"{out}/{dn}-{ver}-py3-none-any.whl", "w") as z:
        z.writestr(f"{di}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\n")
        z.writestr(f"{di}/WHEEL", "Wheel-Version: 1.0\nGenerator: stub\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{di}/RECORD", "")
PY
PIP_CONSTRAINT= python3 -m pip install -q --dry-run --ignore-installed --report "$work/report.json" "${plat[@]}" \
  --target "$work/t" --find-links "$(dirname "$vllm_whl")" --find-links "$work/stubs" vllm==0.24.0 -r "$extra"
python3 - "$work/report.json" "$image" "$extra" >"$work/reqs.txt" <<'PY'
import json, re, sys
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
image = {norm(x) for x in re.split(r"[,\s]+", open(sys.argv[2]).read()) if x}
skip = {"quack-kernels", "fastsafetensors", "nvidia-cudnn-frontend", "triton", "torch-c-dlpack-ext",
        "fastapi-cloud-cli", "fastar", "rignore", "sentry-sdk", "vllm"}
for it in json.load(open(sys.argv[1]))["install"]:
    m = it["metadata"]; n = norm(m["name"])
    if "+stub" not in m["version"] and n not in image and n not in skip:
        print(f"{n}=={m['version']}")
print("apache-tvm-ffi==0.1.9")   # xgrammar imports tvm_ffi at start-up
# typing-extensions is in the image but pydantic 2.14 needs >= 4.16: carried (inferlab-runtime.txt),
# so it is not dropped as an image package
for line in open(sys.argv[3]):
    if norm(line.split("==")[0].strip()) == "typing-extensions":
        print(line.strip())
PY
mkdir -p "$wheels"
PIP_CONSTRAINT= python3 -m pip download -q --no-deps "${plat[@]}" -d "$wheels" -r "$work/reqs.txt"
PIP_CONSTRAINT= python3 -m pip install -q --no-compile --no-deps --no-index --target "$site" "${plat[@]}" \
  "$wheels"/*.whl "$vllm_whl"
# prune what an H100/H200 run of a dense model never loads: FA2 (Hopper uses FA3), the Rust
# frontend (off by default), Blackwell's fmha, deep_gemm for other Pythons, xgrammar's static
# library and headers (62 MB: for building against it, not for importing it)
rm -rf "$site/bin" "$site/vllm/vllm-rs" "$site/vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so" \
  "$site/vllm/third_party/fmha_sm100" "$site"/vllm/third_party/deep_gemm/_C.cpython-31[0134]-*.so \
  "$site/xgrammar/lib" "$site/xgrammar/include"
wc -l <"$work/reqs.txt"; rm -rf "$work"
