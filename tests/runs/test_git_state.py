"""runs.environment.git_state: which commit a run records."""

from __future__ import annotations

import subprocess

from inferlab.runs.environment import git_state


def _repo(path):
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / "f").write_text("x\n")
    subprocess.run(["git", "-C", str(path), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"],
                   check=True)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_checkout_records_its_head_and_whether_it_is_dirty(tmp_path, monkeypatch):
    monkeypatch.delenv("INFERLAB_GIT_SHA", raising=False)
    head = _repo(tmp_path)
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "f").write_text("y\n")
    assert git_state(tmp_path) == (head, True)


def test_the_launchers_commit_wins_over_a_git_folder_that_is_not_this_trees(tmp_path, monkeypatch):
    """The GPU host's copy of the tree carried a stale .git: device.sh's INFERLAB_GIT_SHA is the truth."""
    _repo(tmp_path)
    monkeypatch.setenv("INFERLAB_GIT_SHA", "c1192d9")
    assert git_state(tmp_path) == ("c1192d9", None)


def test_no_git_and_no_variable_records_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("INFERLAB_GIT_SHA", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_state(tmp_path) == (None, None)
