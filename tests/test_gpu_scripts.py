"""The run phase's scripts without a GPU: slim_branch.sh on a throwaway clone (data/ gone from the
new branch only, refusals), pack.sh -> device.sh piece/setup round trip on a fake payload (bytes
identical after unpacking, a missing piece refused), and device.sh collect (only what is new,
never a leaked key). The GPU-side steps (engine, ab, capacity) run on the GPU host only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "scripts" / "gpu"
pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("strip") is None,
                                reason="needs git and strip (binutils)")


def sh(*args, cwd=None, env=None, check=True) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env={**os.environ, **(env or {})}, text=True,
                          capture_output=True, check=check)


def _repo(tmp_path: Path) -> Path:
    """A tiny repository shaped like the project: code, a big data/ and a main branch."""
    r = tmp_path / "repo"
    (r / "src").mkdir(parents=True)
    (r / "data" / "sample").mkdir(parents=True)
    (r / "src" / "a.py").write_text("x = 1\n")
    (r / "data" / "sample" / "big.bin").write_bytes(os.urandom(200_000))
    sh("git", "init", "-q", "-b", "main", r)
    sh("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "0", cwd=r)
    sh("git", "add", "-A", cwd=r)
    sh("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "code and data", cwd=r)
    return r


def test_slim_branch_drops_data_on_its_own_branch_only(tmp_path):
    r = _repo(tmp_path)
    main = sh("git", "rev-parse", "main", cwd=r).stdout.strip()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    out = sh(GPU / "slim_branch.sh", cwd=r, env=env).stdout
    assert "gpu-run = " in out
    assert sh("git", "branch", "--show-current", cwd=r).stdout.strip() == "gpu-run"
    assert not (r / "data").exists() and (r / "src" / "a.py").is_file()
    assert (r / ".gpu-run-source").read_text() == f"source {main}\n"
    assert sh("git", "rev-parse", "main", cwd=r).stdout.strip() == main  # main untouched
    assert sh("git", "rev-parse", "gpu-run^", cwd=r).stdout.strip() == main
    # refusals: main itself, and a slim commit as the source
    assert sh(GPU / "slim_branch.sh", "main", "main", cwd=r, env=env, check=False).returncode == 2
    assert "slim commit already" in sh(GPU / "slim_branch.sh", "HEAD", cwd=r, env=env, check=False).stderr
    sh("git", "checkout", "-q", "main", cwd=r)
    assert (r / "data" / "sample" / "big.bin").is_file()  # back from git


def _payload(tmp_path: Path) -> tuple[Path, Path, Path]:
    site, model = tmp_path / "site", tmp_path / "model"
    (site / "vllm").mkdir(parents=True)
    (site / "vllm" / "__init__.py").write_text("__version__ = '0.24.0'\n")
    (site / "vllm" / "kernels.so").write_bytes(os.urandom(1_500_000))  # incompressible: several pieces
    model.mkdir()
    (model / "config.json").write_text("{}\n")
    (model / "model.safetensors").write_bytes(os.urandom(700_000))
    k6 = tmp_path / "k6"
    shutil.copy("/bin/true", k6)
    return site, model, k6


def test_pack_then_device_setup_round_trip(tmp_path):
    site, model, k6 = _payload(tmp_path)
    pieces = tmp_path / "pieces"
    sh(GPU / "pack.sh", site, model, k6, pieces, "1", cwd=ROOT)
    parts = sorted(pieces.glob("payload.part.*"))
    assert len(parts) >= 3 and (pieces / "payload.sha256").is_file() and (pieces / "MANIFEST").is_file()
    # the device: a copy of the tree with the pieces carried in .gpu-pieces, one call per piece
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "scripts", tree / "scripts")
    work = tmp_path / "gpuwork"
    env = {"GPU_WORK": str(work), "OUT": str(tmp_path / "out")}
    for p in parts[:-1]:
        (tree / ".gpu-pieces").mkdir(exist_ok=True)
        shutil.copy(p, tree / ".gpu-pieces" / p.name)
        sh(tree / "scripts/gpu/device.sh", "piece", cwd=tree, env=env)
    # setup refuses an incomplete payload, naming the sha256
    bad = sh(tree / "scripts/gpu/device.sh", "setup", cwd=tree, env=env, check=False)
    assert bad.returncode == 1 and "a piece is missing or damaged" in bad.stderr
    (tree / ".gpu-pieces").mkdir(exist_ok=True)
    for name in (parts[-1].name, "payload.sha256"):
        shutil.copy(pieces / name, tree / ".gpu-pieces" / name)
    sh(tree / "scripts/gpu/device.sh", "piece", cwd=tree, env=env)
    out = sh(tree / "scripts/gpu/device.sh", "setup", cwd=tree, env=env, check=False)
    assert "unpacked in" in out.stdout, out.stderr
    assert (work / "site/vllm/kernels.so").read_bytes() == (site / "vllm/kernels.so").read_bytes()
    assert (work / "model/model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()
    assert os.access(work / "bin/k6", os.X_OK) and not (work / "pieces").exists()
    text = (work / "env.sh").read_text()
    assert f"INFERLAB_ENGINE_MODEL={work}/model" in text and "INFERLAB_ENGINE_DEVICE=cuda:0" in text
    assert f"PYTHONPATH={work}/site:{tree}/src" in text and "K6_NO_USAGE_REPORT=true" in text


def test_collect_brings_what_is_new_and_never_a_key(tmp_path):
    work, out = tmp_path / "gpuwork", tmp_path / "out"
    env = {"GPU_WORK": str(work), "OUT": str(out)}
    runs = work / "ws" / "data" / "runs"
    (runs / "r1").mkdir(parents=True)
    (runs / "r1" / "run.json").write_text("{}")
    (work / "logs").mkdir(parents=True)
    (work / "logs" / "ab.log").write_text("ok\n")
    out.mkdir()
    sh(GPU / "device.sh", "collect", "first", env=env)
    listed = sh("tar", "-tzf", out / "first.tgz.part00").stdout.split()
    assert "ws/data/runs/r1/run.json" in listed and "logs/ab.log" in listed
    (runs / "r2").mkdir()
    (runs / "r2" / "run.json").write_text("{}")
    sh(GPU / "device.sh", "collect", "second", env=env)
    listed = sh("tar", "-tzf", out / "second.tgz.part00").stdout.split()
    assert any(x.startswith("ws/data/runs/r2") for x in listed) and not any(x.startswith("ws/data/runs/r1") for x in listed)
    # a key that reached an output: nothing is collected
    keyfile = work / "ws" / "platform" / "secrets" / "values" / "api-key"
    keyfile.parent.mkdir(parents=True)
    keyfile.write_text("sk-secret-0123456789abcdef\n")
    (runs / "r3").mkdir()
    (runs / "r3" / "engine.log").write_text("oops sk-secret-0123456789abcdef\n")
    res = sh(GPU / "device.sh", "collect", "third", env=env, check=False)
    assert res.returncode != 0 and "API key" in res.stderr and not list(out.glob("third*"))


def _comparison(ws: Path, cid: str, status: str) -> None:
    d = ws / "data" / "comparisons" / cid
    d.mkdir(parents=True)
    # top-level status as the record has it; a repeat's status beside it must not be read as the record's
    (d / "comparison.json").write_text(json.dumps({"comparison_id": cid, "status": status,
                                                   "repeats": [{"status": "partial"}]}, indent=1))


def test_ab_resume_resumes_the_newest_partial_comparison_and_collects_its_record_again(tmp_path):
    """device.sh ab-resume: `inferlab ab --resume` (a stand-in inferlab.cli on PYTHONPATH records
    its argv and adds a run, as a resume does) on the newest partial comparison, never a complete
    one; the collect brings the new run and the resumed record, collected before, again."""
    work, out = tmp_path / "gpuwork", tmp_path / "out"
    ws = work / "ws"
    env = {"GPU_WORK": str(work), "OUT": str(out)}
    (ws / "data" / "runs").mkdir(parents=True)
    out.mkdir()
    _comparison(ws, "20261204T100000Z-local-ab-old", "partial")
    _comparison(ws, "20261204T110000Z-local-ab-cut", "partial")
    _comparison(ws, "20261204T120000Z-local-ab-done", "complete")
    sh(GPU / "device.sh", "collect", "ab", env=env)  # call 10's collect
    fake = tmp_path / "fake" / "inferlab" / "cli"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        "import os, pathlib, sys\n"
        "ws = pathlib.Path(os.environ['INFERLAB_HOME'])\n"
        "(ws / 'argv.txt').write_text(' '.join(sys.argv[1:]))\n"
        "(ws / 'data/runs/r-resumed').mkdir()\n"
        "(ws / 'data/comparisons' / sys.argv[-1] / 'comparison.json').write_text('{\"status\": \"complete\"}')\n")
    (work / "env.sh").write_text(f"export PYTHONPATH={fake.parents[1]} INFERLAB_HOME={ws}\n")
    res = sh(GPU / "device.sh", "ab-resume", env=env, check=False)
    assert res.returncode == 0, res.stderr
    assert (ws / "argv.txt").read_text() == "ab --resume 20261204T110000Z-local-ab-cut"
    listed = sh("tar", "-tzf", out / "ab-resume.tgz.part00").stdout.split()
    assert "ws/data/runs/r-resumed/" in listed
    assert "ws/data/comparisons/20261204T110000Z-local-ab-cut/comparison.json" in listed
    assert not any("ab-old" in x or "ab-done" in x for x in listed), listed
    # nothing partial left: refused, naming where it looked, and inferlab not started
    (ws / "data/comparisons/20261204T100000Z-local-ab-old/comparison.json").write_text('{"status": "complete"}')
    (ws / "argv.txt").unlink()
    res = sh(GPU / "device.sh", "ab-resume", env=env, check=False)
    assert res.returncode == 1 and "no partial comparison in" in res.stderr and not (ws / "argv.txt").exists()
