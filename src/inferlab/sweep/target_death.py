"""Evidence that the target died during a cell: such a cell is ``failed``, never ``complete``,
whatever k6's exit code. Its numbers describe a dying server and its counters cannot be
cross-checked. The rule, any one of:

- the closing /metrics scrape through the target's URL failed;
- the target's /health did not answer 200 when the cell's load ended (checked before the
  closing scrape, so a target that dies after a cell's last scrape fails the next cell);
- a request got no HTTP response because the connection failed (k6 status 0 with an error
  code other than a timeout: refused, reset, EOF, broken pipe). Timeouts (k6 1050 request,
  1211 dial) are load results under stress, not evidence of death;
- a vLLM pod scraped directly before and after the cell restarted in between (its
  ``process_start_time_seconds`` changed; k8s).

The reason names the evidence; ``--resume`` runs the cell again (the cut attempt moved aside).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ..ingest import IngestError, read_k6
from ..runs.layout import segment_files

# k6 error codes of a request that got no response for reasons of load, not of a dead target
K6_TIMEOUT_CODES = {"1050", "1211"}  # request timeout, TCP dial timeout
_START_TIME = re.compile(rb"^process_start_time_seconds(?:\{[^}]*\})? (\S+)", re.M)


def target_death(cell_dir: Path, n_segments: int, closing_scrape_failed: list[str], healthy_after: bool,
                 failed_rate: float) -> list[str]:
    """Evidence that the target died during a cell (module docstring: the rule); [] when none.
    The cell's k6 output is read only when its summary says some request failed."""
    out = []
    if closing_scrape_failed:
        out.append(f"closing /metrics scrape failed ({', '.join(closing_scrape_failed)})")
    if not healthy_after:
        out.append("/health did not answer 200 at the end of the cell")
    if failed_rate > 0:
        conn, total, codes = _connection_errors(cell_dir, n_segments)
        if conn:
            what = ", ".join(f"{c} x{n}" for c, n in sorted(codes.items()))
            out.append(f"{conn} of {total} requests failed to connect (status 0, k6 error {what})")
    for pod in sorted(p.name for p in (cell_dir / "pods").glob("*") if p.is_dir()):
        before, after = (_start_time(cell_dir / "pods" / pod / f"metrics-{w}.prom") for w in ("before", "after"))
        if before is not None and after is not None and before != after:
            out.append(f"pod {pod} restarted during the cell (process_start_time_seconds {before:.0f} -> {after:.0f})")
    return out


def _connection_errors(cell_dir: Path, n_segments: int) -> tuple[int, int, Counter]:
    """(requests without a response for a connection failure, requests, their k6 error codes)."""
    conn, total, codes = 0, 0, Counter()
    for i in range(n_segments):
        p = cell_dir / segment_files(i, n_segments)["ndjson"]
        if not p.is_file():
            continue
        try:
            req = read_k6(p)
        except IngestError:
            continue
        total += len(req)
        if req.empty:
            continue
        code = req["error_code"].fillna("").astype(str)
        bad = (req["status"].fillna(0) == 0) & ~code.isin(K6_TIMEOUT_CODES)
        conn += int(bad.sum())
        codes.update(c or "none" for c in code[bad])
    return conn, total, codes


def _start_time(path: Path) -> float | None:
    try:
        m = _START_TIME.search(path.read_bytes())
        return float(m.group(1)) if m else None
    except (OSError, ValueError):
        return None
