"""TARGET=url: any OpenAI-compatible server the user runs (``BASE_URL``); nothing is started."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .. import credentials
from ..runs.manifest import TargetInfo
from ..specs import LoadSpec
from .session import TargetError, TargetSession


@contextlib.contextmanager
def url_target(spec: LoadSpec, base_url: str | None) -> Iterator[TargetSession]:
    if not base_url:
        raise TargetError("TARGET=url needs BASE_URL (e.g. BASE_URL=http://127.0.0.1:8000)")
    info = TargetInfo(kind="url", base_url=base_url.rstrip("/"), model=spec.model,
                      served_model_name=spec.model, tls_skip_verify=spec.tls_skip_verify)
    yield TargetSession("url", base_url.rstrip("/"), credentials.api_key("url"), info, verify_tls=not spec.tls_skip_verify)
