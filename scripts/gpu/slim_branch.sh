#!/usr/bin/env bash
# Run phase only, in the checkout the device copies (the session's /work/main): point branch
# BRANCH (default gpu-run) at COMMIT (default main) plus ONE commit that removes data/ and adds
# .gpu-run-source (the commit it came from, which device.sh stamps into each run's manifest),
# and check it out. Why: a device call copies the checkout's tracked files (about 60 MB with
# data/) plus carried paths, 64 MiB in all; without data/ (about 2 MB) a payload piece can be
# ~56 MiB. COMMIT's own branch is never changed (the commit is built with git plumbing, not by
# deleting files on it); re-running moves BRANCH to the new COMMIT. Ignored files under data/
# (your runs, tidy tables) stay on disk untouched and do not travel. Back: `git checkout main`
# (the tracked data/ comes back from git).
# usage: slim_branch.sh [COMMIT] [BRANCH]
set -euo pipefail
commit=${1:-main} branch=${2:-gpu-run}
case "$branch" in main|master|h/*) echo "refusing to move $branch: pick a branch of its own (default gpu-run)" >&2; exit 2;; esac
src=$(git rev-parse --verify "$commit^{commit}")
if git cat-file -e "$src:.gpu-run-source" 2>/dev/null; then
  echo "$commit is a slim commit already ($(git show "$src:.gpu-run-source")): give the commit it came from (main)" >&2; exit 2
fi
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "tracked files have uncommitted changes here: commit or stash them first" >&2; exit 1
fi
blob=$(printf 'source %s\n' "$src" | git hash-object -w --stdin)
tree=$({ git ls-tree "$src" | grep -v -P '\t(data|\.gpu-run-source)$'; printf '100644 blob %s\t.gpu-run-source\n' "$blob"; } | git mktree)
new=$(git commit-tree "$tree" -p "$src" -m "$branch: $(git rev-parse --short "$src") without data/ (device calls copy tracked files, 64 MiB a call)")
git checkout -q -B "$branch" "$new"
echo "$branch = $(git rev-parse --short HEAD): $(git rev-parse --short "$src") without data/;" \
  "tracked files now $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes"
