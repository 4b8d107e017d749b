"""A small vLLM-compatible stand-in server, the test tier between simulations and the real engine.

Real HTTP (OpenAI chat completions with and without SSE, /metrics with vLLM's names, /tokenize,
OTLP spans), continuous batching with a slot limit, and fault injection (errors, stalls, death),
with its ground truth open at ``/standin/stats``. Run ``python -m inferlab.standin --help``, or
in tests ``with StandIn(slots=4, tpot_ms=5) as s: ... s.base_url ... s.stats()``.

Modules: :mod:`.config` (options and command line), :mod:`.http` (the HTTP/1.1 server),
:mod:`.api` (routes), :mod:`.engine` (queue, slots, timing), :mod:`.text` (tokens and answers),
:mod:`.draws` (per-request random draws), :mod:`.metrics`, :mod:`.spans`, :mod:`.stats`,
:mod:`.server` (running one).
"""

from .config import StandInConfig
from .server import DEATH_EXIT_CODE, StandIn, StandInError, standin_argv, standin_env
from .stats import RequestRecord, Stats

__all__ = ["DEATH_EXIT_CODE", "RequestRecord", "StandIn", "StandInConfig", "StandInError", "Stats", "standin_argv",
           "standin_env"]
