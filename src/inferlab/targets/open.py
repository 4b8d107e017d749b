"""Pick a target by kind: ``local`` (the embedded vLLM engine), ``url`` (any OpenAI-compatible
server, ``BASE_URL``), ``k8s`` (a cluster Service through a port-forward the tool opens and
always closes, or the ingress URL). Every target yields the same :class:`TargetSession`, so
sweeps, probes and reports run unchanged on each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..specs import LoadSpec
from .pinning import Pinning
from .session import TargetError, TargetSession

KINDS = ("local", "url", "k8s")


@contextlib.contextmanager
def open_target(kind: str, spec: LoadSpec, run_dir: Path, base_url: str | None = None,
                engine_log: str = "engine/engine.log", pinning: Pinning | None = None,
                in_cluster: bool = False) -> Iterator[TargetSession]:
    """Start or connect to a target for the duration of a run; always cleans up."""
    if kind == "local":
        from .local import local_target

        with local_target(spec, run_dir, engine_log, pinning) as session:
            yield session
    elif kind == "url":
        from .url import url_target

        with url_target(spec, base_url) as session:
            yield session
    elif kind == "k8s":
        from .k8s import k8s_target

        with k8s_target(spec, base_url, in_cluster) as session:
            yield session
    else:
        raise TargetError(f"unknown target {kind!r} (expected {', '.join(KINDS)})")
