"""The local target pointed at another engine interpreter and a CUDA device, end to end through the
CLI as the GPU host runs it (`--engine-python/--engine-model/--engine-device`), with the stand-in
playing the GPU build: a wrapper interpreter that answers `-m vllm.entrypoints.openai.api_server
ARGS` by starting `python -m inferlab.standin ARGS` (it accepts vLLM's flags). The run record
says which interpreter, device and model ran, no CPU dtype was added, nothing was pinned. The
real GPU engine runs on the GPU host only (scripts/gpu/README.md)."""

from __future__ import annotations

import inferlab
from inferlab.cli import main

from ..standin_python import standin_python


def test_sweep_on_another_engine_interpreter_and_device(workspace, tmp_path, monkeypatch):
    for name in ("PYTHON", "MODEL", "DEVICE"):
        monkeypatch.delenv(f"INFERLAB_ENGINE_{name}", raising=False)
    monkeypatch.setattr("os.environ", dict(__import__("os").environ))  # the flags export; restored after
    gpu_python = standin_python(tmp_path / "gpu-build" / "bin" / "python3", extra="--tpot-ms 5", what="a GPU build")
    rc = main(["sweep", "ci-tiny", "--target", "local", "--label", "override", "--engine-python", str(gpu_python),
               "--engine-model", "/models/smollm2", "--engine-device", "cuda:0",
               "--set", "engine.args=[--max-model-len, '1024']"])
    assert rc == 0
    run = inferlab.load_run(inferlab.list_runs()["run_id"].iloc[0])
    m = run.manifest
    assert m.status == "complete", (m.status, m.reason)
    assert m.target.deployment == {"engine_python": str(gpu_python), "device": "cuda:0"}
    assert m.target.model == "/models/smollm2" and m.target.engine_args[:2] == ["--max-model-len", "1024"]
    assert "--dtype" not in m.target.engine_args  # a CUDA engine: no CPU dtype added
    assert "--otlp-traces-endpoint" in m.target.engine_args and not run.spans.empty  # spans as on the CPU engine
    assert m.host.cpu_pinning == "not pinned: the engine runs on cuda:0"
    assert len(run.requests) > 0 and run.requests["ok"].all()
    assert not run.verify()
