#!/usr/bin/env bash
# Debian packages the workspace uses: chromium (HTML -> PDF, the test browser), nginx (chat UI,
# local edge, config tests), prometheus (promtool for alert rules), poppler-utils (pdftotext:
# tests read the PDFs). Run by `make test` and `make report`; installs only what is missing.
# Without root or apt it prints the one command to run and exits 0: what needs a missing tool
# is then skipped with that reason (PDFs, promtool and nginx tests), never silently.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v promtool >/dev/null || need+=(prometheus)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v pdftotext >/dev/null || need+=(poppler-utils)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: missing ${need[*]}; install them with: sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  echo "system-deps: until then PDFs, promtool and nginx tests are skipped with that reason" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${need[@]}"
# Debian's prometheus package starts a server on :9090 when installed; the project starts its
# own (loopback, per run) where needed, so the system one is stopped.
if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus prometheus-node-exporter 2>/dev/null || true; fi
pkill -x prometheus 2>/dev/null || true
pkill -f prometheus-node-exporter 2>/dev/null || true
