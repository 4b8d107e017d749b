"""The capacity plan's check: max sustainable rate of n replicas behind nginx against n x one.

``check_scaling(spec, replicas=2, devices="gpu")`` runs the capacity spec on one replica (one GPU,
or one core) and on ``replicas`` replicas (one GPU / core each, targets/replicas.py), each a run
of its own, and compares them with ``analysis.plan.scaling_check`` (agree within ``tolerance``).
On a two-GPU host that is the issue's check; on the 2-core machine (``devices="cpu"``) it shows
the mechanics only: k6 and nginx share the same two cores.

Until ``open_target`` knows the kind ``replicas`` (targets/open.py), the replicas are started here
and measured as a ``url`` target: the run's label says ``<n>x-<devices>``, the replicas' logs go to
``.cache/replicas/<stamp>/`` beside ``target.json`` (what ran where), and per-replica /metrics are
not recorded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from .. import paths
from ..analysis.plan import scaling_check
from ..runs.reader import load_run
from ..specs import LoadSpec
from ..targets.replicas import Devices, replicas_target
from .runner import run


def replica_capacity(spec: LoadSpec, replicas: int, devices: Devices = "cpu", engine_python: str | None = None,
                     model: str | None = None) -> str:
    """A capacity run of ``replicas`` engines behind nginx; returns its run id."""
    if spec.kind != "capacity":
        raise ValueError(f"spec {spec.name!r} is kind {spec.kind!r}: the scaling check compares max sustainable rates")
    label = f"{spec.name}-{replicas}x-{devices}"
    logs = paths.cache_dir() / "replicas" / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{label}"
    logs.mkdir(parents=True, exist_ok=True)
    with replicas_target(spec, logs, replicas, devices, engine_python, model) as session:
        (logs / "target.json").write_text(session.info.model_dump_json(indent=1))
        return run(spec, target="url", base_url=session.base_url, label=label)


def check_scaling(spec: LoadSpec, replicas: int = 2, devices: Devices = "gpu", single_run: str | None = None,
                  tolerance: float = 0.15, engine_python: str | None = None, model: str | None = None) -> dict:
    """Predicted (replicas x single-replica MSR) against the measured MSR of ``replicas``
    replicas; ``single_run``: an existing one-replica capacity run instead of measuring it."""
    single = single_run or replica_capacity(spec, 1, devices, engine_python, model)
    many = replica_capacity(spec, replicas, devices, engine_python, model)
    res1, resn = (load_run(r).capacity for r in (single, many))
    msr1, msrn = res1.get("msr"), resn.get("msr")
    if msr1 is None or msrn is None:
        raise ValueError(f"no max sustainable rate in run {single if msr1 is None else many}")
    out = {**scaling_check(float(msr1), replicas, float(msrn), tolerance), "single_run": single, "replicas_run": many,
           "devices": devices, **boundary_ratio(res1, resn, replicas)}
    print(json.dumps(out, indent=1))
    return out


def boundary_ratio(single: dict, many: dict, replicas: int) -> dict:
    """Certified records: the measured boundary of ``replicas`` replicas over ``replicas`` x the
    single one's, with a conservative interval from the two boundary intervals (each 95 %;
    [low_n / (n high_1), high_n / (n low_1)] holds with at least 90 %); {} otherwise."""
    from ..analysis.capacity import is_certified

    if not (is_certified(single) and is_certified(many)):
        return {}
    b1, bn = single.get("boundary"), many.get("boundary")
    lo1, hi1, lon, hin = (float(x) for x in (single["interval_low"], single["interval_high"], many["interval_low"],
                                             many["interval_high"]))
    return {"boundary_ratio": bn / (replicas * b1) if b1 and bn else float("nan"),
            "boundary_ratio_interval": [lon / (replicas * hi1) if hi1 > 0 else 0.0,
                                        hin / (replicas * lo1) if lo1 > 0 else float("inf")],
            "boundary_ratio_note": "boundary of n replicas / (n x one replica's), interval from the two boundary "
                                   "intervals (each 95 %: jointly at least 90 %)"}
