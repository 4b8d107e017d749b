"""Specs: what load to apply, the SLO that judges it, the probe and the engine (``models``),
plus the built-in spec files (``<name>.yaml``) shipped beside them."""

from .models import (
    Capacity,
    CellPlan,
    EdgeSpec,
    EngineSpec,
    ObserveSpec,
    LoadSpec,
    Payload,
    ProbeSpec,
    Ramp,
    Slo,
    SpecError,
    StrictModel,
    builtin_spec,
    load_spec,
    make_cell_id,
    parse_overrides,
    plan_cells,
    resolve_spec,
)

__all__ = ["Capacity", "CellPlan", "EdgeSpec", "EngineSpec", "LoadSpec", "ObserveSpec", "Payload", "ProbeSpec", "Ramp", "Slo", "SpecError", "StrictModel",
           "builtin_spec", "load_spec", "make_cell_id", "parse_overrides", "plan_cells", "resolve_spec"]
