"""``make perf``: read_k6 vs the naive pandas way on a >=140 MB k6 NDJSON, in the same run.

The file is built from a real sample cell (the H200 stress ramp) repeated, each copy's
timestamps shifted by one day so requests stay distinct. Each reader runs in a fresh
subprocess so peak RSS (ru_maxrss) is its own. Prints MB/s, the ratio and peak RSS.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from .. import paths

SOURCE = "20261126T214243Z-url-h200-stress/cells/short-rate20to600/k6.ndjson.gz"
STAMP = re.compile(rb'"time":"(\d{4}-\d\d-\d\d)T')

CHILD = r'''
import resource, sys, time, json
path, mode = sys.argv[1], sys.argv[2]
import pandas as pd  # imports are outside the timing for both readers
from inferlab.ingest import read_k6
t = time.perf_counter()
if mode == "naive":
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


def measure(path: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(min_mb: int = 140, big_gb: float = 0.0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        f = build(Path(tmp) / "k6-big.ndjson", min_mb)
        mb = f.stat().st_size / 2**20
        fast, naive = measure(f, "fast"), measure(f, "naive")
        gz = Path(tmp) / "k6-big.ndjson.gz"
        subprocess.run(["gzip", "-k", "-1", str(f)], check=True)
        fast_gz = measure(gz, "fast")
        print(f"k6 NDJSON ingest, {mb:.0f} MB uncompressed ({fast['rows']:,} requests; naive rows = Points)")
        print(f"{'reader':<34}{'seconds':>9}{'MB/s':>9}{'peak RSS MiB':>14}")
        for name, r in (("inferlab read_k6", fast), ("naive pd.read_json+json_normalize", naive),
                        ("inferlab read_k6 (.gz input)", fast_gz)):
            print(f"{name:<34}{r['seconds']:>9.2f}{mb / r['seconds']:>9.0f}{r['peak_rss_mib']:>14.0f}")
        print(f"speed-up vs naive: {naive['seconds'] / fast['seconds']:.1f}x (goal >= 15x); "
              f"RSS ratio: {fast['peak_rss_mib'] / naive['peak_rss_mib']:.2f} (goal <= 0.33)")
        if big_gb:
            big = build(Path(tmp) / "k6-2g.ndjson", int(big_gb * 1024))
            r = measure(big, "fast")
            print(f"{big.stat().st_size / 2**30:.1f} GB file: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB (goal < 1024)")


if __name__ == "__main__":
    main(big_gb=float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
