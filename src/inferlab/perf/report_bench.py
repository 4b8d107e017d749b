"""``make perf``: time rendering every sample report (HTML, no PDF) from existing data; goal < 60 s."""

from __future__ import annotations

import time

from ..report.render import render_all


def main() -> None:
    t = time.perf_counter()
    made = render_all("sample", pdf=False)
    dt = time.perf_counter() - t
    print(f"rendered {sum(p.suffix == '.html' for p in made)} sample reports (HTML) in {dt:.1f} s (goal < 60 s)")


if __name__ == "__main__":
    main()
