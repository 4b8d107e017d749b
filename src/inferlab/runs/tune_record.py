"""Tune records: ``data/tunes/<tune_id>/`` holds ``tune.json`` (this model) and ``study.db``
(the optuna study, SQLite, so ``--resume`` continues it). Every candidate is a run of its own in
data/runs (write-once as always); ``tune.json`` lists them in the order they ran with their
parameters, engine arguments, result and run id, and is replaced atomically as trials finish
(like comparison.json). The study is the optimizer's state; ``tune.json`` is what reports read.
Ids resolve as every record's do (:mod:`inferlab.runs.records`: exact id or unique prefix).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..specs import StrictModel
from .records import TUNES, RecordHeader

TUNE = TUNES.filename
STUDY = "study.db"


class Trial(StrictModel):
    number: int = Field(description="optuna's trial number (order of asking)")
    seed: str = Field("", description="the seed trial's name; '' for a candidate the sampler chose")
    params: dict[str, Any]
    args: list[str] = Field(description="the engine arguments the candidate ran with")
    changed: list[str] = Field(default_factory=list, description="the flags that differ from vLLM's defaults")
    state: Literal["running", "complete", "failed"] = "running"
    run_id: str | None = None
    msr: float | None = Field(None, description="max sustainable rate, requests/s: the interval's lower bound")
    interval_low: float | None = None
    interval_high: float | None = None
    n_steps: int | None = None
    reason: str = ""
    value: float | None = Field(None, description="--objective energy: J per good request (or per output token) at "
                                "the fixed rate, lower is better (msr stays None)")
    energy: dict[str, Any] | None = Field(None, description="--objective energy: the run's figures (analysis/energy.py:"
                                          " energy_j, mean_power_w, good_requests, output_tokens, method, coverage)")
    duplicate_of: int | None = Field(None, description="a point measured before: its result is reused, no run")
    started_at: datetime | None = None
    ended_at: datetime | None = None


class Confirmation(StrictModel):
    """The winner against the baseline by the interleaved A/B: the primary metric's rows."""

    comparison_id: str | None = None
    rows: list[dict[str, Any]] = Field(default_factory=list, description="per cell: metric, ratio tuned/baseline, "
                                       "95 % interval, q-value, verdict (analysis.compare)")
    outcome: Literal["winner confirmed", "nothing beats the default", "not run"] = "not run"
    reason: str = ""


class TuneRecord(RecordHeader):
    tune_id: str
    spec: dict[str, Any] = Field(description="the resolved tune spec")
    capacity_spec: dict[str, Any] = Field(description="the resolved capacity spec every trial ran")
    objective: str = ("max sustainable rate (requests/s) = the highest rate that met the SLO every time it ran = "
                      "the lower bound of the capacity interval [MSR, lowest failing rate]; a candidate whose "
                      "engine did not start is a failed trial")
    objective_kind: Literal["capacity", "energy"] = Field("capacity", description="what ranks the trials (`inferlab "
                                                          "tune --objective`): the certified rate, or energy")
    energy: dict[str, Any] | None = Field(None, description="--objective energy: metric, rate (requests/s), workload "
                                          "and the resolved fixed-rate spec every trial ran")
    baseline_params: dict[str, Any] = Field(default_factory=dict)
    baseline_args: list[str] = Field(default_factory=list)
    trials: list[Trial] = Field(default_factory=list)
    best: int | None = Field(None, description="number of the best complete trial")
    confirmation: Confirmation = Confirmation()
    component: str | None = Field(None, description="platform/components/<name>/ written for the winner")

    def trial(self, number: int) -> Trial | None:
        return next((t for t in self.trials if t.number == number), None)

    @property
    def unit(self) -> str:
        """The objective's unit: req/s (capacity), J/good request or J/token (energy)."""
        if self.objective_kind == "capacity" or not self.energy:
            return "req/s"
        return "J/good request" if self.energy["metric"] == "j_per_good_request" else "J/token"

    def score(self, t: Trial) -> float | None:
        """A trial's objective value: its certified rate, or its energy figure."""
        return t.value if self.objective_kind == "energy" else t.msr

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        """The one home of which way the objective improves: energy lower, capacity higher."""
        return "minimize" if self.objective_kind == "energy" else "maximize"

    def better(self, a: float, b: float) -> bool:
        """Whether objective value ``a`` strictly beats ``b`` (:attr:`direction`)."""
        return a < b if self.direction == "minimize" else a > b

    def result_text(self, t: Trial) -> str:
        """A complete trial's figure in words: its certified rate, or its energy at the fixed
        rate (with the mean power)."""
        if self.objective_kind == "energy" and self.energy:
            power = (t.energy or {}).get("mean_power_w")
            return (f"{t.value:.4g} {self.unit}" + (f" ({power:.0f} W)" if power else "")
                    + f" at {self.energy['rate']:g} requests/s")
        return f"{t.msr:g}/s"


def tunes_dir() -> Path:
    """Where tune records are written (data/tunes)."""
    return TUNES.home


def find_tune(tune_id: str | Path) -> Path:
    """The folder of a tune record (an id, unique prefix allowed, or a path)."""
    return TUNES.find(tune_id)


def load_tune(tune_id: str | Path) -> TuneRecord:
    return TUNES.load(tune_id, TuneRecord)


def save_tune(record: TuneRecord, d: Path) -> None:
    TUNES.save(record, d)
