"""The ``inferlab`` command line (the ``inferlab`` script and ``python -m inferlab.cli``): :func:`main`
parses (:mod:`.parser`, shared options in :mod:`.options`), runs the verb (:mod:`.commands`) and
turns the package's errors into one clear line and exit status 2."""

from __future__ import annotations

import sys

from .parser import build_parser

__all__ = ["build_parser", "main"]


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    import signal

    args = build_parser().parse_args(argv)
    # SIGTERM (kill, CI timeouts, container stops) takes the Ctrl-C path: engines, k6, nginx and
    # port-forwards are stopped and a run is left `partial`, never orphaned
    signal.signal(signal.SIGTERM, _raise_interrupt)
    from ..ingest import IngestError
    from ..specs import SpecError

    try:
        return args.fn(args)
    except (IngestError, SpecError, FileNotFoundError, FileExistsError, PermissionError, RuntimeError) as exc:
        print(f"inferlab {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"inferlab {args.cmd}: interrupted", file=sys.stderr)
        return 130
