#!/usr/bin/env bash
# Here, before packing: does `python3 -m inferlab.cli` run on the GPU image with the payload's site/?
# A clean Python 3.12 venv stands in for the image: it gets only packages that KINDS.md lists for
# the image (image-packages.txt; versions as requirements.lock pins them, since the image's own
# cannot be downloaded), and the check FAILS if pip pulled anything the image lacks. Then, with
# PYTHONPATH=SITE_DIR:src as on the device, every inferlab module the run verbs need is imported
# and the CLI parses and dry-runs the GPU specs. Prints the modules that do not import (reports,
# the cluster's: not needed on the GPU host, rendered here from the records).
# usage: import_check.sh SITE_DIR [VENV_DIR]      (PYTHON312: a python3.12; default pyenv's 3.12;
#        REUSE_VENV=1 keeps a venv made before)
set -euo pipefail
site=$(cd "$1" && pwd) venv=${2:-/tmp/inferlab-import-check}
here=$(cd "$(dirname "$0")" && pwd) repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
py=${PYTHON312:-$(PYENV_VERSION=3.12.1 pyenv which python3.12 2>/dev/null || command -v python3.12)}
[ -x "$venv/bin/python" ] && [ -n "${REUSE_VENV:-}" ] || { rm -rf "$venv" && "$py" -m venv "$venv"; }
pins() { for n in "$@"; do grep -i -m1 "^${n}==" "$repo/requirements.lock" || { echo "no pin for $n" >&2; exit 1; }; done; }
# what inferlab imports from the image (the import graph's third-party names that the image has)
PIP_CONSTRAINT= "$venv/bin/pip" install -q --only-binary=:all: $(pins pandas numpy scipy statsmodels PyYAML httpx \
  psutil rich prometheus_client nvidia-ml-py protobuf matplotlib seaborn pyarrow tqdm attrs)
"$venv/bin/python" - "$here/image-packages.txt" "$site" <<'PY'
import importlib.metadata as md, re, sys
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
image = {norm(x) for x in open(sys.argv[1]).read().split()}
carried = {norm(d.metadata["Name"]) for d in md.distributions(path=[sys.argv[2]])}  # site/ shadows the image
extra = sorted({norm(d.metadata["Name"]) for d in md.distributions()} - image - carried - {"pip", "setuptools"})
if extra:
    sys.exit(f"the stand-in venv holds packages the GPU image lacks: {extra}")
print("stand-in venv: only image packages")
PY
cd "$repo"
PYTHONPATH="$site:$repo/src" INFERLAB_HOME=$(mktemp -d) "$venv/bin/python" - <<'PY'
import importlib, pkgutil, sys
import inferlab
need = ("inferlab.cli", "inferlab.sweep", "inferlab.analysis", "inferlab.ingest", "inferlab.runs", "inferlab.targets",
        "inferlab.telemetry", "inferlab.load", "inferlab.probe", "inferlab.specs", "inferlab.formats", "inferlab.standin")
failed, optional = [], []
for m in pkgutil.walk_packages(inferlab.__path__, "inferlab."):
    if m.name.endswith("__main__"):  # entry points: importing one runs it
        continue
    try:
        importlib.import_module(m.name)
    except Exception as exc:  # noqa: BLE001
        (failed if m.name.startswith(need) and not m.name.startswith("inferlab.targets.k8s") else optional).append(
            f"{m.name}: {type(exc).__name__}: {exc}")
print("not imported (not needed on the GPU host):", *optional, sep="\n  ")
if failed:
    sys.exit("NEEDED MODULES DO NOT IMPORT:\n  " + "\n  ".join(failed))
import pydantic, polars, optuna
print("ok:", sys.version.split()[0], "pydantic", pydantic.VERSION, "polars", polars.__version__, "optuna", optuna.__version__)
PY
for verb_spec in "capacity capacity-gpu" "sweep ab-gpu-eager" "sweep ab-gpu"; do
  # shellcheck disable=SC2086 - two words on purpose
  PYTHONPATH="$site:$repo/src" INFERLAB_HOME=$(mktemp -d) "$venv/bin/python" -m inferlab.cli $verb_spec --dry-run >/dev/null
  echo "dry run $verb_spec: ok"
done
# the read side works with these packages: a shipped sample run read and summarized (polars' k6
# reader, pandas, scipy), when this checkout has data/ (the run phase's gpu-run branch has not)
if [ -d "$repo/data/sample/20261126T205944Z-url-h200-tuned-cudagraphs" ]; then
  PYTHONPATH="$site:$repo/src" INFERLAB_HOME="$repo" "$venv/bin/python" -c '
import inferlab
from inferlab.analysis import summary, energy
run = inferlab.load_run("20261126T205944Z-url-h200-tuned-cudagraphs")
print("sample run read:", len(run.requests), "requests,", len(summary.cell_summary(run)), "cells,",
      round(float(energy.cell_energy(run)["j_per_token"].iloc[0]), 3), "J/token in its first cell")'
fi
