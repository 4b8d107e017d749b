"""Specs: what load to apply, the SLO that judges it, the probe and the engine (``models``);
which cells a run has and their names (``planning``); spec files by path or built-in name, with
overrides (``resolve``); plus the built-in spec files (``<name>.yaml``) shipped beside them."""

from .base import StrictModel
from .models import Capacity, EdgeSpec, EngineSpec, LoadSpec, ObserveSpec, Payload, ProbeSpec, Ramp, Slo
from .planning import CellPlan, make_cell_id, plan_cells
from .resolve import SpecError, builtin_spec, load_spec, parse_overrides, resolve_spec

__all__ = ["Capacity", "CellPlan", "EdgeSpec", "EngineSpec", "LoadSpec", "ObserveSpec", "Payload", "ProbeSpec", "Ramp",
           "Slo", "SpecError", "StrictModel", "builtin_spec", "load_spec", "make_cell_id", "parse_overrides",
           "plan_cells", "resolve_spec"]
