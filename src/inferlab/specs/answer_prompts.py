"""The answer check's prompt set: 32 chat prompts of mixed length, generated deterministically
from a seed and shipped as ``specs/answers/answers-32-v1.jsonl`` with its sha256 fixed here.

Contract: :func:`generate` returns the file's exact bytes (``random.Random(SEED)`` over the word
lists below, JSON with sorted keys, one prompt a line); :func:`load_prompt_set` reads the shipped
file and refuses it when its sha256 is not :data:`SHA256` (a changed prompt set would make two
checks incomparable: a new set gets a new name). Regenerate with
``python -m inferlab.specs.answer_prompts --write`` only together with a new NAME and SHA256.

Decisions: four kinds, so that length and batching shapes vary: 12 ``short`` questions, 10
``medium`` (a few sentences of context and an instruction), 6 ``long`` (a ~250-word passage and a
question; well under the CI spec's 1024-token context with 32 answer tokens), and 4 ``shared``
prompts behind one ~150-word system message, so that prefix caching has blocks to reuse within
the set itself (its effect on answers is then a measured finding, not an assumption).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

NAME = "answers-32-v1"
SEED = 20
FILE = Path(__file__).with_name("answers") / f"{NAME}.jsonl"
SHA256 = "a496017be3aa8573623196c9e4b9fc3cfedd35edf2a3955d3a6ffd29a96fc86c"  # of FILE (tests check generate() gives it)

TOPICS = ["a GPU", "a CPU cache", "the KV cache of a language model", "a hash table", "TCP congestion control",
          "a binary search tree", "photosynthesis", "the water cycle", "a compiler", "garbage collection",
          "a database index", "the immune system", "plate tectonics", "a neural network", "public-key cryptography",
          "the Fourier transform", "an operating system scheduler", "a load balancer", "the Doppler effect",
          "a steam engine"]
ASKS = ["Explain what {t} is in two sentences.", "Give one example of {t} in everyday life.",
        "What problem does {t} solve?", "Describe {t} to a ten-year-old.", "Name three facts about {t}.",
        "Why is {t} important?", "What is the main weakness of {t}?", "Summarize how {t} works."]
NOUNS = ["server", "request", "queue", "token", "batch", "memory", "latency", "engine", "client", "model",
         "river", "forest", "city", "market", "library", "machine", "signal", "network", "garden", "bridge"]
VERBS = ["serves", "stores", "moves", "waits for", "measures", "builds", "sends", "reads", "grows", "changes"]
ADJS = ["small", "busy", "slow", "fast", "old", "new", "quiet", "large", "shared", "careful"]
INSTRUCTIONS = ["Summarize the text above in one sentence.", "What is the main point of the text above?",
                "List two things the text above says.", "Answer briefly: who does what in the text above?"]


@dataclass(frozen=True)
class Prompt:
    id: str
    kind: str
    messages: list[dict[str, str]]


def _sentence(rng: random.Random) -> str:
    a, b = rng.sample(NOUNS, 2)
    return f"The {rng.choice(ADJS)} {a} {rng.choice(VERBS)} the {rng.choice(ADJS)} {b}."


def _passage(rng: random.Random, sentences: int) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


def _prompts() -> list[dict]:
    rng = random.Random(SEED)
    out: list[dict] = []
    for _ in range(12):
        out.append({"kind": "short", "messages": [
            {"role": "user", "content": rng.choice(ASKS).format(t=rng.choice(TOPICS))}]})
    for _ in range(10):
        out.append({"kind": "medium", "messages": [
            {"role": "user", "content": f"{_passage(rng, rng.randint(3, 6))} {rng.choice(INSTRUCTIONS)}"}]})
    for _ in range(6):
        out.append({"kind": "long", "messages": [
            {"role": "user", "content": f"{_passage(rng, rng.randint(28, 36))} {rng.choice(INSTRUCTIONS)}"}]})
    system = ("You are a careful assistant for a team that runs language-model servers. " + _passage(rng, 20)
              + " Answer in plain sentences.")
    for _ in range(4):
        out.append({"kind": "shared", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": rng.choice(ASKS).format(t=rng.choice(TOPICS))}]})
    order = list(range(len(out)))
    rng.shuffle(order)  # kinds interleaved: a concurrent pass batches long and short prompts together
    return [{"id": f"p{i + 1:02d}", **out[j]} for i, j in enumerate(order)]


def generate() -> bytes:
    """The prompt set file's exact bytes (deterministic: same bytes on every machine)."""
    return "".join(json.dumps(p, sort_keys=True, ensure_ascii=True) + "\n" for p in _prompts()).encode()


def load_prompt_set(path: Path | None = None, sha256: str | None = None) -> list[Prompt]:
    """The shipped prompt set (or ``path``), refused unless its sha256 is the recorded one."""
    p = path or FILE
    data = p.read_bytes()
    got, want = hashlib.sha256(data).hexdigest(), sha256 or SHA256
    if got != want:
        raise ValueError(f"{p}: sha256 {got} is not the prompt set's recorded {want}: the file changed; a changed "
                         "set needs a new name (answer checks of two sets cannot be compared)")
    out = []
    for n, line in enumerate(data.decode().splitlines(), start=1):
        try:
            d = json.loads(line)
            out.append(Prompt(id=str(d["id"]), kind=str(d["kind"]), messages=list(d["messages"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{p}:{n}: expected a JSON object with id, kind, messages ({exc})") from None
    return out


if __name__ == "__main__":  # python -m inferlab.specs.answer_prompts [--write]
    data = generate()
    if "--write" in sys.argv[1:]:
        FILE.write_bytes(data)
    print(f"{NAME}: {len(data.splitlines())} prompts, sha256 {hashlib.sha256(data).hexdigest()}")
