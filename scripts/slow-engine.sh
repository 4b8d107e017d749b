#!/usr/bin/env bash
# Rehearse a slower CPU for the local engine only: run a command (make test, make report, ...)
# with every process started through .venv-engine/bin/python limited by a CFS quota (cgroup v1
# `cpu` controller) to a share of this machine's cores; everything else (pytest, k6, nginx,
# Chromium, the stand-in) keeps this machine's speed. Developers' tool, root only; it changes
# nothing in the tree (the venv's link is put back on exit).
#
#   scripts/slow-engine.sh FACTOR COMMAND [ARG...]     e.g. scripts/slow-engine.sh 4 make test
#   START_FACTOR=1 scripts/slow-engine.sh 4 ...          the engine's start-up at this machine's speed
#   ISA=avx2 scripts/slow-engine.sh 1 make test          the engine on its AVX2 code paths, no quota
#
# An engine server (argv with --port) gets 1/START_FACTOR of the cores (default: FACTOR) until
# its /health answers, then 1/FACTOR; other engine-venv processes (model conversion, queries of
# the venv) get 1/START_FACTOR.
#
# ISA=avx2: every engine process takes this CPU for one without AVX-512, as on an AVX2-only CPU:
# vLLM loads its AVX2 kernels (torch.cpu's capabilities lose their AVX-512 and AMX entries: a
# sitecustomize the wrapper puts on PYTHONPATH filters them when torch.cpu is imported), PyTorch
# dispatches its AVX2 kernels (ATEN_CPU_CAPABILITY=avx2), oneDNN and MKL stop at AVX2
# (ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS) and inductor compiles for x86-64-v3 (AVX2),
# not -march=native (TORCHINDUCTOR_CPP_MARCH).
# The product still reads this CPU's flags, so the engine keeps the dtype it picks here
# (bfloat16; on an AVX2-only CPU it picks float32, ~10 % faster there).
#
# Why: the done-when of issue 18 names a 2-core AVX2-only CPU on which the engine answered 64
# tokens in 6.8 s at 1 client; a 2-core machine with AVX-512 does it in ~2 s. A quota is not
# that CPU. Decode slowed by the quota stands in for that CPU's decode. The start-up (imports,
# model load, warm-up: mostly one thread of Python) slows less on a slower CPU than decode does,
# so START_FACTOR=1 and START_FACTOR=FACTOR bound it from both sides. docs/testing.md, "Slow engine".
#
# How: .venv-engine/bin/python (make engine's link to python3) is replaced for the command's
# duration by a small script that moves itself into the start group and, for a server, leaves a
# watcher that moves the start group's processes into the run group once /health answers; then
# it execs the venv's python3 (so the venv is still found). Children inherit the group.
#
# Runs recorded meanwhile carry the slowed speed, and the run-time estimate reads this host's
# newest local record (sweep/engine_speed.py): the script lists them at the end; move them out
# of data/runs after reading them. If the script itself is killed (SIGKILL), the next run finds
# its wrapper, sees its owner gone and puts the link back; by hand: ln -sfn python3 .venv-engine/bin/python
set -euo pipefail

factor=${1:?usage: scripts/slow-engine.sh FACTOR COMMAND [ARG...]}
shift
[ $# -gt 0 ] || { echo "slow-engine: no command given" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
py="$root/.venv-engine/bin/python"
marker="# inferlab slow-engine wrapper, owner pid"
[ "$(id -u)" = 0 ] || { echo "slow-engine: needs root (it writes a cgroup)" >&2; exit 2; }
command -v curl >/dev/null || { echo "slow-engine: needs curl (the watcher polls /health)" >&2; exit 2; }
base=/sys/fs/cgroup/cpu
[ -f "$base/cpu.cfs_quota_us" ] && [ -w "$base" ] || {
  echo "slow-engine: needs cgroup v1's cpu controller, writable, at $base (cgroup v2 is not supported)" >&2; exit 2; }

# the link as make engine made it, or a wrapper left by a rehearsal that was killed
if [ -f "$py" ] && [ ! -L "$py" ] && grep -q "^$marker" "$py"; then
  owner=$(sed -n "s/^$marker \([0-9]*\)$/\1/p" "$py")
  if [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null; then
    echo "slow-engine: another rehearsal (pid $owner) holds $py" >&2; exit 2
  fi
  echo "slow-engine: $py is a wrapper left by a rehearsal that was killed (pid $owner): putting the link back" >&2
  ln -sfn python3 "$py"
  rm -rf "${TMPDIR:-/tmp}"/inferlab-slow-engine-"$owner"-site.*
  for cg in "$base"/inferlab-slow-engine-"$owner"-*; do
    [ -d "$cg" ] || continue
    for p in $(cat "$cg/cgroup.procs"); do echo "$p" > "$base/cgroup.procs" || true; done
    rmdir "$cg" || true
  done
fi
[ -L "$py" ] && [ "$(readlink "$py")" = python3 ] && [ -x "$root/.venv-engine/bin/python3" ] || {
  echo "slow-engine: expected $py -> python3 (make engine's venv); found $(ls -l "$py" 2>&1)" >&2; exit 2; }

cores=$(nproc)
period=10000  # 10 ms periods: the quota's stalls stay short beside a token's time
quota() {  # the quota (us per period) for 1/FACTOR of the cores; refuses a FACTOR below 1
  awk -v c="$cores" -v f="$1" -v p="$period" 'BEGIN { if (!(f + 0 >= 1)) exit 1; q = int(c * p / f + 0.5); print (q < 1000 ? 1000 : q) }' \
    || { echo "slow-engine: FACTOR must be a number >= 1, got '$1'" >&2; return 1; }
}
start_factor=${START_FACTOR:-$factor}
isa=${ISA:-}
case "$isa" in ""|avx2) ;; *) echo "slow-engine: ISA must be avx2 or unset, got '$isa'" >&2; exit 2 ;; esac
# both checked before anything changes (two commands: set -e stops at either)
quota "$factor" >/dev/null
quota "$start_factor" >/dev/null

run_cg=$base/inferlab-slow-engine-$$-run
start_cg=$base/inferlab-slow-engine-$$-start
limit() {
  local q
  q=$(quota "$2")
  echo "$period" > "$1/cpu.cfs_period_us"
  echo "$q" > "$1/cpu.cfs_quota_us"
}
created=$(mktemp)
site=$(mktemp -d "${TMPDIR:-/tmp}/inferlab-slow-engine-$$-site.XXXX")  # ISA=avx2's sitecustomize
restore() {
  set +e  # every step runs, and the script keeps the command's exit status
  ln -sfn python3 "$py"
  rm -rf "$site"
  # processes still in the groups (an engine being stopped) go back to the root group first
  for cg in "$run_cg" "$start_cg"; do
    [ -d "$cg" ] || continue
    for _ in $(seq 20); do
      for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do echo "$p" > "$base/cgroup.procs" 2>/dev/null || true; done
      rmdir "$cg" 2>/dev/null && break
      sleep 0.5
    done
    [ ! -d "$cg" ] || echo "slow-engine: $cg left behind (still in use)" >&2
  done
  local runs="${INFERLAB_HOME:-$root}/data/runs" new  # the workspace's (inferlab.paths)
  if [ -d "$runs" ]; then
    new=$(find "$runs" -mindepth 1 -maxdepth 1 -type d -newer "$created" -printf '%f\n' | sort)
    [ -z "$new" ] || printf 'slow-engine: run records made or changed with the slowed engine (move them out of %s):\n%s\n' "$runs" "$new" >&2
  fi
  rm -f "$created"
}
trap restore EXIT
trap "exit 143" TERM
trap "exit 130" INT
mkdir "$run_cg" "$start_cg"
limit "$run_cg" "$factor"
limit "$start_cg" "$start_factor"

isa_env=
if [ "$isa" = avx2 ]; then
  cat > "$site/sitecustomize.py" <<'SITE'
"""inferlab slow-engine ISA=avx2: torch.cpu's AVX-512 checks answer False in this process."""
import importlib.abc
import sys


class _NoAvx512(importlib.abc.MetaPathFinder):
    """Finds torch.cpu as the path finder does and, once it has run, makes its get_capabilities
    (every _is_*_supported asks it) drop the AVX-512 and AMX entries."""

    def find_spec(self, name, path, target=None):
        if name != "torch.cpu":
            return None
        import importlib.machinery
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            real = module.get_capabilities

            def get_capabilities():
                return {k: v for k, v in real().items() if not k.startswith(("avx512", "amx"))}
            module.get_capabilities = get_capabilities
        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _NoAvx512())
SITE
  isa_env="ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 TORCHINDUCTOR_CPP_MARCH=x86-64-v3"
  isa_env="$isa_env PYTHONPATH=$site\${PYTHONPATH:+:\$PYTHONPATH}"
fi

# written beside the link and renamed over it: the venv never lacks its python
cat > "$py.slow-engine" <<WRAPPER
#!/bin/sh
$marker $$
echo \$\$ > $start_cg/cgroup.procs
${isa_env:+export $isa_env}
port=; prev=
for a in "\$@"; do [ "\$prev" = --port ] && port=\$a; prev=\$a; done
if [ -n "\$port" ]; then
  me=\$\$
  ( until curl -sf -o /dev/null "http://127.0.0.1:\$port/health"; do kill -0 \$me 2>/dev/null || exit 0; sleep 0.5; done
    for p in \$(cat $start_cg/cgroup.procs); do echo \$p > $run_cg/cgroup.procs 2>/dev/null; done ) &
fi
exec "\$(dirname "\$0")/python3" "\$@"
WRAPPER
chmod +x "$py.slow-engine"
mv -f "$py.slow-engine" "$py"
echo "slow-engine: on $cores cores the engine gets 1/$factor of the machine once healthy, 1/$start_factor while it starts${isa:+, on its $isa code paths}: $*" >&2
# one line: bash reads a script as it runs, so an edit to this file while the command runs must
# not change what follows it (the exit status, then the EXIT trap's restore)
"$@"; exit $?
