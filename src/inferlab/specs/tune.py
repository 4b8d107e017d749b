"""Tune specs: which engine settings ``inferlab tune`` searches, how each maps to a vLLM flag,
the capacity spec that measures a candidate, the seed candidates, the budget and the confirmation.

A leaf module like :mod:`inferlab.specs.models` (pydantic, yaml, the standard library and its
sibling). Built-in tune specs live in ``specs/tunes/<name>.yaml`` (a subfolder: every
``specs/*.yaml`` is a load spec and is validated as one).

Mapping a point of the space to engine arguments (:func:`engine_args`): the capacity spec's
``engine.args`` with every searched flag removed, then, per parameter whose value differs from
``default`` (vLLM's own value when the flag is absent), its flag: ``--flag VALUE`` for int and
categorical parameters, ``flag`` / ``off_flag`` for a bool. So a point at every default passes no
searched flag at all, and the baseline (the capacity spec's own arguments, :func:`baseline_point`)
maps back to those arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import Field, model_validator

from .base import StrictModel, read_mapping, validate_file
from .resolve import SpecError

Value = Union[bool, int, float, str, None]
NAME_RE = r"^[a-z][a-z0-9_]*$"
FLAG_RE = r"^--[a-z0-9][a-z0-9-]*$"


class _Param(StrictModel):
    flag: str = Field(pattern=FLAG_RE, description="the vLLM flag, e.g. --max-num-seqs")
    description: str = ""


class CategoricalParam(_Param):
    kind: Literal["categorical"] = "categorical"
    choices: list[Value] = Field(min_length=2, description="values to try; null = the flag is not passed")
    default: Value = Field(None, description="vLLM's value when the flag is absent (null: not passed)")

    @model_validator(mode="after")
    def _default_is_a_choice(self) -> CategoricalParam:
        if self.default not in self.choices:
            raise ValueError(f"default {self.default!r} is not among choices {self.choices}")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"choices repeat a value: {self.choices}")
        return self


class IntParam(_Param):
    kind: Literal["int"] = "int"
    low: int = Field(ge=0)
    high: int = Field(gt=0)
    log: bool = Field(False, description="sample on a log scale (powers matter, not steps)")
    step: int = Field(1, ge=1)
    default: int = Field(description="vLLM's value when the flag is absent; inside [low, high]")

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        if not self.low < self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("log: true needs low >= 1 and step 1")
        if not self.low <= self.default <= self.high:
            raise ValueError(f"default {self.default} is outside [{self.low}, {self.high}]")
        return self


class BoolParam(_Param):
    kind: Literal["bool"] = "bool"
    off_flag: str | None = Field(None, pattern=FLAG_RE, description="the flag for false (e.g. --no-enable-prefix-"
                                 "caching); None: false = the flag is absent")
    default: bool = False

    @model_validator(mode="after")
    def _off(self) -> BoolParam:
        if self.default and not self.off_flag:
            raise ValueError("default true needs off_flag (the flag that turns it off)")
        return self


Param = Annotated[Union[CategoricalParam, IntParam, BoolParam], Field(discriminator="kind")]


class SeedTrial(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="label in the trial table, e.g. default")
    params: dict[str, Value] = Field(default_factory=dict, description="values; a parameter not named takes the "
                                     "baseline's value (the capacity spec's engine arguments)")


class Budget(StrictModel):
    max_trials: int = Field(8, ge=1, le=500, description="candidates measured, seeds included")
    max_minutes: float = Field(60, gt=0, description="no new trial starts when the remaining time is below the "
                               "mean duration of the trials so far")


class Confirm(StrictModel):
    """The winner against the baseline by the interleaved A/B (sweep/ab.py)."""

    spec: str | None = Field(None, description="sweep or capacity spec of the A/B (name or path); None: the tune's "
                             "capacity spec (primary metric: max sustainable rate)")
    set: list[str] = Field(default_factory=list, description="--set KEY=VALUE items for that spec")
    pairs: int = Field(3, ge=1, le=20, description="interleaved pairs (a verdict needs 3)")


class EnergyObjective(StrictModel):
    """``inferlab tune --objective energy``: each candidate runs ``spec`` (a sweep whose workload
    arrives open loop, constant or Poisson, so every candidate is offered the same requests/s)
    and is scored by ``metric`` from its GPU energy readings (analysis/energy.py); lower wins."""

    spec: str = Field(description="sweep spec (name or path) whose workload arrives open loop at a constant or "
                      "Poisson rate: the fixed load every candidate is measured at")
    set: list[str] = Field(default_factory=list, description="--set KEY=VALUE items for that spec")
    rate: float | None = Field(None, gt=0, description="requests/s the workload arrives at; None: the workload's own "
                               "rate (`inferlab tune --rate` overrides both)")
    metric: Literal["j_per_good_request", "j_per_token"] = Field(
        "j_per_good_request", description="J per good (in-SLO) request, or J per successful output token")


class ComponentTarget(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="platform/components/<name>/ for the winner")
    overlay: str = Field("cpu", description="the overlay whose vllm container arguments the component rewrites "
                         "(and with which it is validated)")


class TuneSpec(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$", description="label part of the tune id")
    capacity: str = Field(description="the capacity spec (kind: capacity) that measures each candidate: name or path")
    set: list[str] = Field(default_factory=list, description="--set KEY=VALUE items applied to that spec")
    space: dict[Annotated[str, Field(pattern=NAME_RE)], Param] = Field(min_length=1)
    seed_trials: list[SeedTrial] = Field(default_factory=lambda: [SeedTrial(name="default")],
                                         description="enqueued first, in order")
    budget: Budget = Budget()
    sampler_seed: int = Field(0, description="TPE sampler seed")
    confirm: Confirm = Confirm()
    energy: EnergyObjective | None = Field(None, description="the fixed-rate load and metric of `--objective "
                                           "energy`; None: that objective is not available for this spec")
    component: ComponentTarget
    restart_command_file: str | None = Field(None, description="target url: a file holding the shell command that "
                                             "restarts the server with $INFERLAB_ENGINE_ARGS (env "
                                             "INFERLAB_TUNE_RESTART_COMMAND wins); never a secret on its command line")

    @model_validator(mode="after")
    def _consistent(self) -> TuneSpec:
        flags = [f for p in self.space.values() for f in (p.flag, getattr(p, "off_flag", None)) if f]
        if len(set(flags)) != len(flags):
            raise ValueError(f"a flag appears in two parameters: {sorted(flags)}")
        names = [s.name for s in self.seed_trials]
        if len(set(names)) != len(names):
            raise ValueError(f"seed_trials repeat a name: {names}")
        for s in self.seed_trials:
            for k, v in s.params.items():
                if k not in self.space:
                    raise ValueError(f"seed_trials[{s.name}].params.{k}: no such parameter (have {sorted(self.space)})")
                err = value_error(self.space[k], v)
                if err:
                    raise ValueError(f"seed_trials[{s.name}].params.{k}: {err}")
        return self


def value_error(p: CategoricalParam | IntParam | BoolParam, v: Value) -> str:
    """Why ``v`` is not a value of ``p`` ('' when it is)."""
    if isinstance(p, CategoricalParam):
        return "" if v in p.choices and type(v) is type(p.choices[p.choices.index(v)]) else f"{v!r} not in {p.choices}"
    if isinstance(p, IntParam):
        ok = isinstance(v, int) and not isinstance(v, bool) and p.low <= v <= p.high
        return "" if ok else f"{v!r} is not an int in [{p.low}, {p.high}]"
    return "" if isinstance(v, bool) else f"{v!r} is not true/false"


# ---------------------------------------------------------------- points <-> engine arguments

def _split(args: list[str]) -> list[list[str]]:
    """Arguments grouped per flag: ``["--a", "1", "--b", "--c=2"]`` -> ``[["--a", "1"], ["--b"], ["--c=2"]]``."""
    groups: list[list[str]] = []
    for a in args:
        if a.startswith("--") or not groups:
            groups.append([a])
        else:
            groups[-1].append(a)
    return groups


def _flag_of(group: list[str]) -> str:
    return group[0].split("=", 1)[0]


def _parse(raw: str, p: CategoricalParam | IntParam) -> Value:
    if isinstance(p, IntParam):
        return int(raw)
    for c in p.choices:
        if c is not None and str(c) == raw:
            return c
    return yaml.safe_load(raw)


def baseline_point(space: dict, base_args: list[str]) -> dict[str, Value]:
    """The values the base arguments imply: a flag present there gives its value, else the default."""
    point: dict[str, Value] = {name: p.default for name, p in space.items()}
    for g in _split(base_args):
        for name, p in space.items():
            if _flag_of(g) == p.flag:
                if isinstance(p, BoolParam):
                    point[name] = True
                else:
                    raw = g[0].split("=", 1)[1] if "=" in g[0] else (g[1] if len(g) > 1 else "")
                    point[name] = _parse(raw, p)
            elif isinstance(p, BoolParam) and _flag_of(g) == p.off_flag:
                point[name] = False
    return point


def engine_args(space: dict, base_args: list[str], point: dict[str, Value]) -> list[str]:
    """The engine arguments of a point (module docstring: the mapping)."""
    searched = {f for p in space.values() for f in (p.flag, getattr(p, "off_flag", None)) if f}
    out = [a for g in _split(base_args) if _flag_of(g) not in searched for a in g]
    return out + changed_flags(space, point)


def changed_flags(space: dict, point: dict[str, Value]) -> list[str]:
    """The flags of a point's values that differ from vLLM's defaults, in the space's order."""
    out: list[str] = []
    for name, p in space.items():
        v = point.get(name, p.default)
        if v == p.default and type(v) is type(p.default):
            continue
        if isinstance(p, BoolParam):
            out += [p.flag] if v else [p.off_flag] if p.off_flag else []
        elif v is not None:
            out += [p.flag, str(v)]
    return out


# ---------------------------------------------------------------- files

def tunes_spec_dir() -> Path:
    return Path(__file__).resolve().parent / "tunes"


def load_tune_spec(name_or_path: str | Path) -> TuneSpec:
    """A tune spec by path or built-in name (``specs/tunes/<name>.yaml``); errors name the file
    and every bad field."""
    p = Path(name_or_path)
    if not p.exists() and not p.suffix:
        p = tunes_spec_dir() / f"{name_or_path}.yaml"
        if not p.is_file():
            have = ", ".join(sorted(x.stem for x in tunes_spec_dir().glob("*.yaml")))
            raise SpecError(f"no built-in tune spec {str(name_or_path)!r} (have: {have})")
    return validate_file(TuneSpec, read_mapping(p, "tune spec", SpecError), p, "tune spec", SpecError)
