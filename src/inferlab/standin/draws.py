"""Per-request random draws of the stand-in: injected error, stall, speed factor.

Decision: each request's draws come from its own generator keyed by (seed, request key), the key
being its X-Request-Id (else its arrival number), so a request's fate does not depend on the
order in which concurrent requests arrived: the same run ids against the same seed meet the
same errors, stalls and service times.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .config import StandInConfig


@dataclass(frozen=True)
class Draws:
    error_status: int | None  # 500 or 503 when this request is answered with an injected error
    stall_s: float  # 0, or how long it holds its slot before prefill
    speed: float  # multiplies its prefill and per-token times; lognormal with mean 1


def draw(cfg: StandInConfig, key: str) -> Draws:
    rng = random.Random(f"{cfg.seed}:{key}")
    # always draw all four numbers, so changing one rate leaves the other draws as they were
    u_err, u_code, u_stall, z = rng.random(), rng.random(), rng.random(), rng.gauss(0.0, 1.0)
    status = (503 if u_code < cfg.error_503_share else 500) if u_err < cfg.error_rate else None
    s = cfg.service_sigma
    return Draws(error_status=status, stall_s=cfg.stall_s if u_stall < cfg.stall_rate else 0.0,
                 speed=math.exp(s * z - s * s / 2))
