"""The stand-in server's one configuration, and its command line derived from it.

Every option is a field of :class:`StandInConfig` (bounds and a description each); the command
line is generated from the fields, so an option is declared once. Flags use vLLM's names where
vLLM has the setting (``--max-num-seqs``, ``--api-key``, ``--served-model-name``,
``--max-model-len``, ``--enable-prefix-caching``, ``--otlp-traces-endpoint``), so that
``python -m inferlab.standin --port P $INFERLAB_ENGINE_ARGS`` takes an engine's arguments; other
vLLM flags are accepted and ignored (:func:`parse_args` returns them, the stats list them).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import get_args

from pydantic import BaseModel, ConfigDict, Field

API_KEY_ENV = "VLLM_API_KEY"  # vLLM reads its key here when --api-key is absent


class StandInConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="TCP port; 0 = any free port (printed on start)")
    model: str = Field("smollm2", description="model path or id (recorded only: nothing is loaded)")
    served_model_name: str = Field("smollm2", description="the name requests must ask for")
    api_key: str | None = Field(None, description=f"bearer key for /v1/*; default: ${API_KEY_ENV}, else no auth")
    slots: int = Field(256, ge=1, le=100_000, description="max_num_seqs: requests running at once; the rest queue")
    max_model_len: int = Field(2048, ge=16, description="prompt + max_tokens above it is refused (HTTP 400)")
    enable_prefix_caching: bool = Field(True, description="reuse cached 16-token prompt blocks (vLLM 0.32's default)")
    otlp_traces_endpoint: str | None = Field(None, description="OTLP/HTTP traces URL: one llm_request span a request")
    collect_detailed_traces: str | None = Field(None, description="accepted for vLLM compatibility; no effect")
    tpot_ms: float = Field(20.0, gt=0, description="time per output token at batch 1 (ms)")
    batch_alpha: float = Field(0.1, ge=0, description="tpot grows as tpot_ms * (1 + alpha * (running - 1))")
    prefill_base_ms: float = Field(5.0, ge=0, description="prefill time of an empty prompt (ms)")
    prefill_ms_per_token: float = Field(0.5, ge=0, description="prefill time per uncached prompt token (ms)")
    service_sigma: float = Field(0.0, ge=0, le=3, description="sigma of a per-request lognormal speed factor (mean 1)")
    seed: int = Field(0, description="seeds the speed factors and fault draws (per request id)")
    output_seed: int = Field(0, description="salts the answer text: another value gives other answers")
    answer_change_share: float = Field(0.0, ge=0, le=1, description="share of prompts whose answer differs from "
                                       "a drawn token on (standin/answer_change.py: a setting that changes some answers)")
    eos_tokens: int | None = Field(None, ge=1, description="without ignore_eos an answer stops near this length")
    error_rate: float = Field(0.0, ge=0, le=1, description="share of requests answered at once with an HTTP error")
    error_503_share: float = Field(0.5, ge=0, le=1, description="share of injected errors that are 503 (else 500)")
    stall_rate: float = Field(0.0, ge=0, le=1, description="share of requests that hold their slot stall_s first")
    stall_s: float = Field(5.0, ge=0, description="length of a stall (s)")
    die_after_requests: int | None = Field(None, ge=1, description="exit once this many requests completed")
    die_at_s: float | None = Field(None, gt=0, description="exit this many seconds after start")
    pid_file: str | None = Field(None, description="write the process id here")

    def cli_args(self) -> list[str]:
        """The flags that give this configuration (fields left at their default are omitted).
        The API key is never among them: it travels in ``$VLLM_API_KEY``, as for the engine."""
        out: list[str] = []
        for name, value in self.model_dump(exclude_defaults=True, exclude={"api_key"}).items():
            flag = _flag(name)
            if isinstance(value, bool):
                out.append(flag if value else f"--no-{flag[2:]}")
            elif value is not None:
                out += [flag, str(value)]
        return out


ALIASES = {"slots": ["--max-num-seqs"]}  # vLLM's name for the slot count


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar_type(annotation) -> type:
    return next(t for t in (get_args(annotation) or (annotation,)) if t is not type(None))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m inferlab.standin", allow_abbrev=False, description=(
        "A small vLLM-compatible stand-in server: OpenAI chat API (streaming too), continuous batching "
        "with a slot limit, /metrics with vLLM's names, OTLP spans, fault injection. Unknown flags "
        "(other vLLM arguments) are accepted and ignored."))
    for name, field in StandInConfig.model_fields.items():
        kind = _scalar_type(field.annotation)
        if kind is bool:
            p.add_argument(_flag(name), action=argparse.BooleanOptionalAction, default=None, help=field.description)
        else:
            p.add_argument(_flag(name), *ALIASES.get(name, []), dest=name, type=kind, default=None,
                           help=f"{field.description} (default: {field.default})")
    return p


def parse_args(argv: list[str] | None = None) -> tuple[StandInConfig, list[str]]:
    """(configuration, ignored arguments) from a command line; the key falls back to $VLLM_API_KEY."""
    ns, ignored = build_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    given = {k: v for k, v in vars(ns).items() if v is not None}
    if "api_key" not in given and os.environ.get(API_KEY_ENV):
        given["api_key"] = os.environ[API_KEY_ENV]
    return StandInConfig(**given), ignored
