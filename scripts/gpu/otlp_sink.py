"""Run the project's OTLP/HTTP trace receiver (inferlab.telemetry.otlp.OtlpReceiver, frozen copy)
as a daemon on 127.0.0.1:PORT and append what it receives to OUT_FILE (OTLP/JSON lines, the
Collector file exporter's format) every half second; on SIGTERM drain once more and exit.

usage: python3 otlp_sink.py PORT OUT_FILE
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import project_packages  # noqa: E402

project_packages()
from inferlab.telemetry.otlp import OtlpReceiver  # noqa: E402

stop = False


def _term(*_):
    global stop
    stop = True


def main(port: int, out: Path) -> None:
    signal.signal(signal.SIGTERM, _term)
    status = out.with_suffix(".status.json")
    with OtlpReceiver(port=port) as rx, open(out, "ab") as fh:
        while True:
            data = rx.drain()
            if data:
                fh.write(data)
                fh.flush()
            status.write_text(json.dumps({"posts": rx.posts, "spans": rx.spans, "request_spans": rx.count(""),
                                          "rejected": dict(rx.rejected)}))
            if stop:
                break
            time.sleep(0.5)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
