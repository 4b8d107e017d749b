"""inferlab: honest, reproducible LLM-serving benchmarks (vLLM + k6 + notebooks)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_run", "list_runs"]


def __getattr__(name: str):
    # Lazy: `import inferlab` stays cheap (the CLI imports it for --version).
    if name in ("load_run", "list_runs"):
        from .runs import reader

        return getattr(reader, name)
    raise AttributeError(name)
