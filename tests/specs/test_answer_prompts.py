"""The shipped answer-check prompt set is the generator's output, byte for byte, with the
recorded sha256; a changed file is refused."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from inferlab.specs import answer_prompts as ap


def test_the_shipped_file_is_the_generated_one_with_the_recorded_sha256():
    data = ap.generate()
    assert data == ap.FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == ap.SHA256


def test_the_set_mixes_lengths_and_shares_a_prefix():
    ps = ap.load_prompt_set()
    assert len(ps) == 32 and len({p.id for p in ps}) == 32
    assert Counter(p.kind for p in ps) == {"short": 12, "medium": 10, "long": 6, "shared": 4}
    words: dict[str, list[int]] = {}
    for p in ps:
        words.setdefault(p.kind, []).append(len(" ".join(m["content"] for m in p.messages).split()))
    assert max(words["short"]) < 15 < min(words["medium"]) and max(words["medium"]) < 60
    assert 150 < min(words["long"]) and max(words["long"]) < 400  # with 32 answer tokens, fits a 1024-token context
    systems = {p.messages[0]["content"] for p in ps if p.kind == "shared"}
    assert len(systems) == 1 and len(next(iter(systems)).split()) > 100
    assert [p.kind for p in ps[:8]] != sorted(p.kind for p in ps[:8])  # kinds interleaved


def test_a_changed_prompt_file_is_refused(tmp_path):
    p = tmp_path / "set.jsonl"
    p.write_bytes(ap.FILE.read_bytes().replace(b"GPU", b"TPU"))
    with pytest.raises(ValueError, match="set.jsonl: sha256 .* is not the prompt set's recorded"):
        ap.load_prompt_set(p)
