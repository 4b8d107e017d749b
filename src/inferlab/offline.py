"""Nothing leaves the machine: the switches that stop every tool the project starts from
reporting usage, fetching news or checking for updates. One place, so the local processes,
the Kubernetes manifests' expectations and the tests read the same list.

Tests read them back from the real processes (``/proc/<pid>/environ`` and ``cmdline``).
"""

from __future__ import annotations

# k6 sends an anonymous usage report at the end of every test unless this is set.
K6_ENV = {"K6_NO_USAGE_REPORT": "true"}

# vLLM posts usage statistics unless told not to (either variable stops it); DO_NOT_TRACK
# also stops Hugging Face Hub telemetry in the same process.
VLLM_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}

# Headless Chromium (PDF renderer and the test browser): no background requests, no component
# or safe-browsing updates, no sync, no first-run pings, no metrics.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                  "--metrics-recording-only", "--no-pings", "--no-default-browser-check"]

# JupyterLab: no news feed (and no first-open question about it), no update check, and the
# read-only extension manager (the default one searches PyPI); loopback only.
JUPYTER_LAB_ARGS = ["--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                    "--LabApp.extension_manager=readonly", "--ServerApp.ip=127.0.0.1"]
