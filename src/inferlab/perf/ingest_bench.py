"""``make perf``: read_k6 vs the naive pandas way on a >=140 MB k6 NDJSON, in the same run.

The file is built from a real sample cell (the H200 stress ramp) repeated, each copy's
timestamps shifted by one day so requests stay distinct. Each reader runs in a fresh
subprocess so peak RSS (ru_maxrss) is its own. Prints MB/s, the ratio and peak RSS, and the
cost of verification: the same file read as a recorded cell of a run (``load_run(...).requests``,
sha256 and size checked against run.json while it is read) beside the bare reader.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from .. import paths
from ..runs.verify import hash_file

SOURCE = "20261126T214243Z-url-h200-stress/cells/short-rate20to600/k6.ndjson.gz"
STAMP = re.compile(rb'"time":"(\d{4}-\d\d-\d\d)T')

CHILD = r'''
import resource, sys, time, json
path, mode = sys.argv[1], sys.argv[2]
import pandas as pd  # imports are outside the timing for both readers
from inferlab.ingest import read_k6
from inferlab.runs.reader import Run
if mode == "verified":
    from pathlib import Path
    run = Run(Path(path))  # reads run.json: outside the timing
t = time.perf_counter()
if mode == "verified":
    n = len(run.requests)
elif mode == "naive":
    df = pd.read_json(path, lines=True)
    pts = pd.json_normalize(df.loc[df["type"] == "Point", "data"].tolist())
    n = len(pts)
else:
    n = len(read_k6(path))
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "rows": n, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def build(out: Path, min_mb: int) -> Path:
    src = gzip.decompress((paths.sample_dir() / SOURCE).read_bytes())
    copies = -(-min_mb * 2**20 // len(src))
    with open(out, "wb") as fh:
        for i in range(copies):
            if i == 0:
                fh.write(src)
                continue
            fh.write(STAMP.sub(lambda m: b'"time":"' + (datetime.strptime(m.group(1).decode(), "%Y-%m-%d")
                                                        + timedelta(days=i)).strftime("%Y-%m-%d").encode() + b"T", src))
    return out


def as_run(data: Path, run_dir: Path) -> Path:
    """A run directory whose one cell's k6 output is ``data`` (hard-linked), recorded in run.json."""
    from datetime import UTC, datetime

    from .. import __version__
    from ..runs.layout import cell_path
    from ..runs.manifest import CellRecord, FileEntry, HostInfo, Manifest, TargetInfo, Versions
    from ..runs.store import write_manifest

    rel = cell_path("short-c1", "k6")
    (run_dir / rel).parent.mkdir(parents=True)
    try:
        (run_dir / rel).hardlink_to(data)
    except OSError:
        (run_dir / rel).write_bytes(data.read_bytes())
    sha, n = hash_file(run_dir / rel)
    m = Manifest(run_id="20260101T000000Z-url-perf", kind="imported", label="perf", created_at=datetime.now(UTC),
                 status="complete", target=TargetInfo(kind="url", base_url="-", model="-"),
                 versions=Versions(inferlab=__version__, python=sys.version.split()[0]),
                 host=HostInfo(hostname="-", cpu_model="-", cores=1, utc_offset_minutes=0),
                 cells=[CellRecord(cell_id="short-c1", payload="short", executor="shared-iterations", vus=1,
                                   status="complete")],
                 files=[FileEntry(path=rel, sha256=sha, bytes=n)])
    write_manifest(run_dir, m)
    return run_dir


def measure(path: Path, mode: str, repeat: int = 1) -> dict:
    """Seconds, rows and peak RSS of the fastest of ``repeat`` fresh processes (a busy machine
    only adds time)."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return min(runs, key=lambda r: r["seconds"])


def main(min_mb: int = 140, big_gb: float = 0.0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        f = build(Path(tmp) / "k6-big.ndjson", min_mb)
        mb = f.stat().st_size / 2**20
        fast, naive = measure(f, "fast", repeat=5), measure(f, "naive")
        gz = Path(tmp) / "k6-big.ndjson.gz"
        subprocess.run(["gzip", "-k", "-1", str(f)], check=True)
        fast_gz = measure(gz, "fast", repeat=5)
        verified = measure(as_run(f, Path(tmp) / "run-plain"), "verified", repeat=5)
        verified_gz = measure(as_run(gz, Path(tmp) / "run-gz"), "verified", repeat=5)
        hash_s = {}
        for name, path in (("plain", f), ("gz", gz)):
            t = time.perf_counter()
            hash_file(path)
            hash_s[name] = time.perf_counter() - t
        print(f"k6 NDJSON ingest, {mb:.0f} MB uncompressed ({fast['rows']:,} requests; naive rows = Points)")
        print(f"{'reader':<40}{'seconds':>9}{'MB/s':>9}{'peak RSS MiB':>14}")
        for name, r in (("inferlab read_k6", fast), ("naive pd.read_json+json_normalize", naive),
                        ("inferlab read_k6 (.gz input)", fast_gz),
                        ("load_run().requests, verified", verified),
                        ("load_run().requests, verified (.gz)", verified_gz)):
            print(f"{name:<40}{r['seconds']:>9.2f}{mb / r['seconds']:>9.0f}{r['peak_rss_mib']:>14.0f}")
        print(f"speed-up vs naive: {naive['seconds'] / fast['seconds']:.1f}x (goal >= 15x); "
              f"RSS ratio: {fast['peak_rss_mib'] / naive['peak_rss_mib']:.2f} (goal <= 0.33)")
        print(f"verification (sha256 + size against run.json, hashed in the reader's pass): "
              f"{100 * (verified['seconds'] / fast['seconds'] - 1):+.0f}% plain, "
              f"{100 * (verified_gz['seconds'] / fast_gz['seconds'] - 1):+.0f}% .gz; sha256 alone: "
              f"{hash_s['plain']:.2f} s for {mb:.0f} MB, "
              f"{hash_s['gz']:.3f} s for the {gz.stat().st_size / 2**20:.0f} MB .gz")
        if big_gb:
            big = build(Path(tmp) / "k6-2g.ndjson", int(big_gb * 1024))
            r = measure(big, "fast")
            print(f"{big.stat().st_size / 2**30:.1f} GB file: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB (goal < 1024)")


if __name__ == "__main__":
    main(big_gb=float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
