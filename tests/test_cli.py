"""The command line's shape: options shared by several verbs declared once (parent parsers),
the run verbs alike, defaults from the environment, ``python -m inferlab.cli``, and the
explicit ``reconcile`` verb."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from inferlab import paths
from inferlab.cli import build_parser, main
from inferlab.runs.environment import host_info, versions
from inferlab.runs.manifest import Manifest, TargetInfo
from inferlab.runs.store import RunWriter, read_manifest, write_manifest

CLI = Path(__file__).resolve().parents[1] / "src" / "inferlab" / "cli"


@pytest.mark.parametrize("option", ["--target", "--base-url", "--set", "--edge", "--prometheus", "--prometheus-url"])
def test_each_shared_option_is_declared_once(option):
    source = "\n".join(p.read_text() for p in CLI.glob("*.py"))
    assert len(re.findall(rf'add_argument\("{option}"', source)) == 1


def test_run_verbs_take_the_same_options():
    p = build_parser()
    parsed = [vars(p.parse_args([verb])) for verb in ("sweep", "stress", "capacity")]
    assert [sorted(a) for a in parsed] == [sorted(parsed[0])] * 3
    assert {a["default_spec"] for a in parsed} == {"matrix-local", "stress-local", "capacity-local"}
    assert {a["spec"] for a in parsed} == {None}  # not given: the default, or with --resume the recorded spec


def test_defaults_come_from_the_environment_when_the_parser_is_built(monkeypatch):
    monkeypatch.setenv("INFERLAB_TARGET", "url")
    monkeypatch.setenv("INFERLAB_EDGE", "1")
    monkeypatch.delenv("INFERLAB_BASE_URL", raising=False)
    p = build_parser()
    sweep = p.parse_args(["sweep"])
    assert (sweep.target, sweep.edge, sweep.base_url) == ("url", True, None)
    assert p.parse_args(["ui"]).base_url == "http://127.0.0.1:8011"  # a running server: the local engine's
    assert p.parse_args(["ab", "a", "b"]).target == "url"


def test_ab_answer_tokens_and_prompts_reach_the_comparison_and_a_resume_refuses_them(monkeypatch, capsys):
    """``ab --answer-tokens N --answer-prompts M`` asks run_comparison for N-token answers to M
    prompts (not given: its defaults); a count below 1 (or prompts over the set's 32) is a usage
    error; with ``--resume`` or ``--no-answer-check`` they are refused (the record fixes them)."""
    import inferlab.sweep.ab as ab

    seen: list[dict] = []
    monkeypatch.setattr(ab, "run_comparison", lambda *a, **kw: seen.append(kw) or "cid")
    assert main(["ab", "ci-tiny", "ci-tiny", "--answer-tokens", "8", "--answer-prompts", "12"]) == 0
    assert main(["ab", "ci-tiny", "ci-tiny"]) == 0
    assert (seen[0]["answer_tokens"], seen[0]["answer_prompts"]) == (8, 12)
    assert "answer_tokens" not in seen[1] and "answer_prompts" not in seen[1]
    for opt, bad, why in (("--answer-tokens", "0", "expected a whole number of at least 1"),
                          ("--answer-prompts", "0", "expected a whole number of at least 1"),
                          ("--answer-prompts", "33", "33: the answer check's prompt set has 32 prompts")):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["ab", "a", "b", opt, bad])
        assert why in capsys.readouterr().err
    assert main(["ab", "--resume", "20261127T073618Z-local-ab-aa-local", "--answer-tokens", "8",
                 "--answer-prompts", "4"]) == 2
    assert "drop --answer-tokens, --answer-prompts" in capsys.readouterr().err
    assert main(["ab", "ci-tiny", "ci-tiny", "--answer-prompts", "8", "--no-answer-check"]) == 2 and len(seen) == 2
    assert "--answer-prompts sets the answer check's passes; with --no-answer-check there is none" in \
        capsys.readouterr().err
    from inferlab.cli.options import ANSWER_PROMPTS, ANSWER_TOKENS
    from inferlab.specs.answer_prompts import load_prompt_set
    from inferlab.sweep.answer_check import MAX_TOKENS
    assert ANSWER_TOKENS == MAX_TOKENS and ANSWER_PROMPTS == len(load_prompt_set())  # the help's defaults


def test_ab_and_gate_declare_the_a_b_options_once():
    """ab and gate share their A/B options (options.ab_run), each with its own order default:
    ab's abba, gate's alternate (gate takes no abba); the CLI's orders are sweep.ab's."""
    from inferlab.cli.options import ORDERS
    from inferlab.sweep.ab import ORDERS as RUN_ORDERS

    assert ORDERS == RUN_ORDERS
    p = build_parser()
    ab = p.parse_args(["ab", "a", "b", "--set-tuned", "x=1", "--overlay-tuned", "t"])
    gate = p.parse_args(["gate", "a", "b", "--margin", "5%", "--set-candidate", "x=1", "--overlay-candidate", "t"])
    for a in (ab, gate):  # not given: None (so that --resume can refuse what is given); defaults in ab_defaults
        assert (a.pairs, a.order, a.seed, a.label) == (None,) * 4
        assert (a.set_baseline, a.overlay_baseline, a.resume) == ([], None, None)
        assert (a.ab_defaults["pairs"], a.ab_defaults["seed"]) == (3, 0)
    assert (ab.ab_defaults["order"], ab.set_tuned, ab.overlay_tuned) == ("abba", ["x=1"], "t")
    assert (gate.ab_defaults["order"], gate.set_candidate, gate.overlay_candidate) == ("alternate", ["x=1"], "t")
    with pytest.raises(SystemExit):
        p.parse_args(["gate", "a", "b", "--margin", "5%", "--order", "abba"])


def test_resume_alone_takes_the_runs_recorded_spec(workspace, monkeypatch, capsys):
    """`inferlab capacity --resume RUN_ID` without a spec resumes with the spec the run recorded
    (its --set values and observers included), not the command's default spec, which the resume
    would refuse as different in ~25 fields; --set items merge into the recorded spec, and the
    real resume check then refuses exactly that change; a spec named is used as named."""
    from inferlab.specs import resolve_spec
    from inferlab.sweep import runner

    monkeypatch.setenv("INFERLAB_EDGE", "1")  # an observer default from the environment: not applied on a resume
    recorded = resolve_spec("capacity-local", sets=["capacity.cap_requests=800", "capacity.start_rate=3"],
                            label="cap-x")
    m = Manifest(run_id="20261201T000000Z-url-cap-x", kind="capacity", label="cap-x", created_at=datetime.now(UTC),
                 target=TargetInfo(kind="url", base_url="http://127.0.0.1:9", model="smollm2"),
                 versions=versions(paths.install_root(), None, None), host=host_info(same_host=False),
                 spec=recorded.model_dump(mode="json"), status="partial")
    RunWriter.create(workspace / "data" / "runs" / m.run_id, m)
    # the real resume check (runner.run -> RunWriter.resume) refuses a --set change, by name, before any load
    assert main(["capacity", "--resume", m.run_id, "--target", "url", "--base-url", "http://127.0.0.1:9",
                 "--set", "capacity.cap_requests=400"]) == 2
    err = capsys.readouterr().err
    assert "(1 differences, recorded -> given): capacity.cap_requests (800 -> 400)" in err
    given = []
    monkeypatch.setattr(runner, "run", lambda spec, **kw: given.append((spec, kw["resume"])) or m.run_id)
    assert main(["capacity", "--resume", m.run_id]) == 1  # the run is still partial: exit 1, as after a real cut
    assert given[-1][0].model_dump(mode="json") == recorded.model_dump(mode="json")
    assert given[-1][1] == m.run_id
    main(["capacity", "--resume", m.run_id, "--set", "capacity.cap_requests=400"])
    assert (given[-1][0].capacity.cap_requests, given[-1][0].capacity.start_rate) == (400, 3)  # merged into the record
    main(["capacity", "capacity-local", "--resume", m.run_id])
    assert given[-1][0].capacity.start_rate != 3 and given[-1][0].observe.edge is not None  # as named, observers on


def test_resume_of_a_recorded_spec_this_version_rejects_names_the_file(workspace, capsys):
    m = Manifest(run_id="20261201T000000Z-url-old", kind="sweep", label="old", created_at=datetime.now(UTC),
                 target=TargetInfo(kind="url", base_url="http://127.0.0.1:9", model="smollm2"),
                 versions=versions(paths.install_root(), None, None), host=host_info(same_host=False),
                 spec={"name": "old", "concurrency": [1], "think_time_s": 1}, status="partial")
    RunWriter.create(workspace / "data" / "runs" / m.run_id, m)
    assert main(["sweep", "--resume", m.run_id]) == 2
    err = capsys.readouterr().err
    assert f"{m.run_id}/run.json" in err and "think_time_s" in err  # the file and the field, not a traceback


def test_python_m_inferlab_cli_is_the_command():
    out = subprocess.run([sys.executable, "-m", "inferlab.cli", "--version"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.startswith("inferlab ")


def test_reconcile_records_a_dead_writers_run_as_partial(workspace, capsys):
    m = Manifest(run_id="20261201T000000Z-url-stale", kind="sweep", label="stale", created_at=datetime.now(UTC),
                 target=TargetInfo(kind="url", base_url="http://127.0.0.1:9", model="smollm2"),
                 versions=versions(paths.install_root(), None, None), host=host_info(same_host=False), spec={})
    w = RunWriter.create(workspace / "data" / "runs" / m.run_id, m)
    w.manifest.writer = w.manifest.writer.model_copy(update={"process_started": 0.0})  # a writer long gone
    write_manifest(w.dir, w.manifest)
    assert main(["reconcile", m.run_id]) == 0
    assert read_manifest(w.dir).status == "partial"
    assert f"{m.run_id}: partial (writer pid" in capsys.readouterr().out
    assert main(["reconcile", m.run_id]) == 0
    assert "partial; nothing to reconcile" in capsys.readouterr().out
