"""The edge's access-log format: ONE source for the ingress-nginx controller and the local edge.

The controller's ConfigMap in ``platform/ingress-controller/`` holds the nginx ``log_format``
(``log-format-upstream``) and the maps it uses (``http-snippet``). The local edge
(``targets.edge``, write side) renders its nginx config from these and from
:func:`local_edge_template`; ``platform.checks`` holds the built controller to them; the reader of
both logs is ``ingest.edge_log`` (read side). So the two edges log the same fields the same way.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..paths import platform_dir

INGRESS_CONTROLLER_DIR = "ingress-controller"  # under platform/
INGRESS_CONFIGMAP = "ingress-nginx-controller"
EDGE_LOG_KEYS = ("log-format-upstream", "http-snippet")


def edge_log_source() -> dict[str, str]:
    """``{"log-format-upstream": ..., "http-snippet": ...}`` as the controller's ConfigMap file
    holds them (the file kustomize builds, not a copy); a missing key is a ValueError naming it."""
    f = platform_dir() / INGRESS_CONTROLLER_DIR / f"{INGRESS_CONFIGMAP}-configmap.yaml"
    data = yaml.safe_load(f.read_text()).get("data") or {}
    missing = [k for k in EDGE_LOG_KEYS if not data.get(k)]
    if missing:
        raise ValueError(f"{f}: data has no {', '.join(missing)}")
    return {k: data[k] for k in EDGE_LOG_KEYS}


def local_edge_template() -> Path:
    """The local edge's nginx ``http {}`` template, beside the controller's ConfigMap."""
    return platform_dir() / INGRESS_CONTROLLER_DIR / "local-edge.conf.template"
