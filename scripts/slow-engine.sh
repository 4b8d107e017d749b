#!/usr/bin/env bash
# Rehearse a slower CPU for the local engine only: run a command (make test, make report, ...)
# with every process started through .venv-engine/bin/python limited by a CFS quota (cgroup v1
# `cpu` or v2 `cpu.max`) to a share of this machine's cores; everything else (pytest, k6, nginx,
# the stand-in) keeps this machine's speed. Developers' tool, root only; it changes nothing in
# the tree (the venv's link is put back on exit).
#
#   scripts/slow-engine.sh FACTOR COMMAND [ARG...]     e.g. scripts/slow-engine.sh 4.2 make test
#   START_FACTOR=1 scripts/slow-engine.sh 4.2 ...        the engine's start-up at this machine's speed
#
# An engine server (argv with --port) gets 1/START_FACTOR of the cores (default: FACTOR) until
# its /health answers, then 1/FACTOR; other engine-venv processes (model conversion, queries of
# the venv) get 1/START_FACTOR.
#
# Why: the done-when of issue 18 names a 2-core AVX2-only CPU on which the engine answered 64
# tokens in 6.8 s at 1 client (9.4 tokens/s); a 2-core machine with AVX-512 does it in ~2 s.
# A quota is not that CPU. Decode slowed by FACTOR stands in for that CPU's decode. The start-up
# (imports, model load, warm-up: mostly one thread of Python) would slow less on a slower CPU
# than decode does, so START_FACTOR=1 and START_FACTOR=FACTOR bound it from both sides. What
# runs outside the engine keeps this machine's speed. docs/testing.md, "Slow engine".
#
# How: .venv-engine/bin/python (a link to python3) is replaced for the command's duration by a
# small script that moves itself into the start group, and, for a server, leaves a watcher that
# moves the group's processes into the run group once /health answers; then it execs the venv's
# python3 (so the venv is still found). Children inherit the group.
set -euo pipefail

factor=${1:?usage: scripts/slow-engine.sh FACTOR COMMAND [ARG...]}
shift
[ $# -gt 0 ] || { echo "slow-engine: no command given" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
py="$root/.venv-engine/bin/python"
[ -e "$root/.venv-engine/bin/python3" ] || { echo "slow-engine: $root/.venv-engine missing: run make engine first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "slow-engine: needs root (it writes a cgroup)" >&2; exit 2; }
command -v curl >/dev/null || { echo "slow-engine: needs curl (the watcher polls /health)" >&2; exit 2; }
start_factor=${START_FACTOR:-$factor}

cores=$(nproc)
period=10000  # 10 ms periods: the quota's stalls stay short beside a token's time
quota() {
  python3 -c "import sys; c, f, p = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]); assert f >= 1, 'FACTOR >= 1'; print(max(1000, round(c * p / f)))" "$cores" "$1" "$period"
}
quota "$factor" >/dev/null && quota "$start_factor" >/dev/null  # both FACTORs checked before anything changes
name="inferlab-slow-engine-$$"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then  # cgroup v2, unified
  base=/sys/fs/cgroup
  limit() { echo "$(quota "$2") $period" > "$1/cpu.max"; }
elif [ -d /sys/fs/cgroup/cpu ]; then  # cgroup v1
  base=/sys/fs/cgroup/cpu
  limit() { echo "$period" > "$1/cpu.cfs_period_us"; local q; q=$(quota "$2"); echo "$q" > "$1/cpu.cfs_quota_us"; }
else
  echo "slow-engine: no writable cpu cgroup found under /sys/fs/cgroup" >&2
  exit 2
fi
run_cg=$base/$name-run
start_cg=$base/$name-start

restore() {
  rm -f "$py" && ln -s python3 "$py"
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
}
trap restore EXIT
trap "exit 143" TERM INT
mkdir "$run_cg" "$start_cg"
limit "$run_cg" "$factor"
limit "$start_cg" "$start_factor"

rm -f "$py"
cat > "$py" <<WRAPPER
#!/bin/sh
echo \$\$ > $start_cg/cgroup.procs
port=; prev=
for a in "\$@"; do [ "\$prev" = --port ] && port=\$a; prev=\$a; done
if [ -n "\$port" ]; then
  me=\$\$
  ( until curl -sf -o /dev/null "http://127.0.0.1:\$port/health"; do kill -0 \$me 2>/dev/null || exit 0; sleep 0.5; done
    for p in \$(cat $start_cg/cgroup.procs); do echo \$p > $run_cg/cgroup.procs 2>/dev/null; done ) &
fi
exec "\$(dirname "\$0")/python3" "\$@"
WRAPPER
chmod +x "$py"
echo "slow-engine: on $cores cores the engine gets 1/$factor of the machine once healthy, 1/$start_factor while it starts: $*" >&2
"$@"
