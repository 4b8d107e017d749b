"""The stand-in's ground truth: one record per request it received, and its counters.

What estimator tests compare against: ``service_s`` is the time a request held a slot (admission
to its last token), ``queue_s`` the wait for one; times come from the server's own monotonic
clock, so they are what the server did, not what a client saw.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .config import StandInConfig


class RequestRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(description="X-Request-Id as sent (vLLM names it chatcmpl-<id>), else a made-up one")
    arrival_unix: float
    stream: bool = Field(False, description="asked for an SSE stream")
    status: int | None = Field(None, description="HTTP status answered; None while in flight")
    finish_reason: str | None = Field(None, description="length, stop, abort (client left) or error (injected)")
    prompt_tokens: int = Field(0, description="prompt tokens with the chat template's")
    cached_tokens: int = Field(0, description="prompt tokens served from the prefix cache")
    completion_tokens: int = Field(0, description="tokens generated (sent, for a stream cut short)")
    max_tokens: int = Field(0, description="as asked, else what max_model_len leaves")
    temperature: float = Field(1.0, description="as asked (recorded for the span; answers ignore it)")
    top_p: float = Field(1.0, description="as asked (recorded for the span)")
    speed: float = Field(1.0, description="the request's lognormal speed factor (time multiplier)")
    stall_s: float = Field(0.0, description="injected stall: the slot held before prefill (s)")
    batch_at_admission: int = Field(0, description="requests running, this one included, when it got its slot")
    queue_s: float | None = None
    prefill_s: float | None = Field(None, description="admission to first token (a stall included)")
    decode_s: float | None = Field(None, description="first token to last token")
    service_s: float | None = Field(None, description="admission to last token: time holding a slot")
    ttft_s: float | None = None
    e2e_s: float | None = None


class Stats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: StandInConfig
    ignored_args: list[str] = Field(default_factory=list, description="command-line arguments taken as vLLM's, unused")
    started_unix: float
    arrived: int = Field(0, description="chat requests that passed auth and validation")
    completed: int = Field(0, description="answered 200 in full")
    aborted: int = Field(0, description="the client left before the answer ended")
    errors_injected: dict[str, int] = Field(default_factory=dict, description="HTTP status -> injected errors")
    stalled: int = Field(0, description="requests given a stall")
    rejected: int = Field(0, description="refused before arrival: auth, bad JSON, unknown model, too long")
    running: int = Field(0, description="holding a slot now")
    waiting: int = Field(0, description="queued for a slot now")
    max_running: int = Field(0, description="the most that held slots at once")
    spans_exported: int = Field(0, description="spans the OTLP receiver accepted")
    dead: bool = Field(False, description="died as configured (fault injection)")
    requests: list[RequestRecord] = Field(default_factory=list)
