"""Options shared by several verbs, each declared once as an argparse parent parser, and the
project defaults they fall back to.

Defaults live here once: the Makefile passes a variable only when the user set it, and the
project's own environment variables carry the INFERLAB_ prefix (tools keep VLLM_*, K6_*, OTEL_*).
Every parent is built when the parser is (:func:`inferlab.cli.parser.build_parser`), so an
``INFERLAB_<NAME>`` set before then is its default.
"""

from __future__ import annotations

import argparse
import os

DEFAULTS = {"TARGET": "local", "SPEC": "matrix-local", "STRESS_SPEC": "stress-local", "OVERLAY": "minikube-gpu",
            "CAPACITY_SPEC": "capacity-local", "RUNS": "sample", "BASE_URL": "", "IN_CLUSTER": "", "EDGE": "",
            "TUNE_SPEC": "tune-local", "PROMETHEUS_URL": ""}
TARGETS = ["local", "url", "k8s"]
# an A/B's orders: sweep.ab.ORDERS, written here so that parsing imports nothing heavy
# (tests/test_cli.py checks that the two agree)
ORDERS = ("abba", "alternate", "random")
# the answer check's default longest answer (sweep.answer_check.MAX_TOKENS) and its prompt set's
# size (specs/answers/answers-32-v1.jsonl), written here likewise
ANSWER_TOKENS = 32
ANSWER_PROMPTS = 32
ORDER_HELP = {"abba": "abba: A B, B A, A B, ... (counterbalanced)", "alternate": "alternate: A B A B ...",
              "random": "random: a seeded random order within each pair"}
LOCAL_SERVER = "http://127.0.0.1:8011"  # `inferlab serve`'s engine


def env_default(name: str) -> str:
    """``$INFERLAB_<name>`` when set and not empty, else the project default."""
    return os.environ.get(f"INFERLAB_{name}") or DEFAULTS[name]


def env_flag(name: str) -> bool:
    """A boolean option's default: ``$INFERLAB_<name>`` set to anything but empty or 0."""
    return env_default(name) not in ("", "0")


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


class _ToEnvironment(argparse.Action):
    """Store the value and export it as ``INFERLAB_<DEST>``: the engine choice has one home,
    the environment that targets.engine.engine_choice reads (so `ab`, `tune` and their repeats
    see it as the sweep does)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        os.environ[f"INFERLAB_{self.dest.upper()}"] = values


def target() -> argparse.ArgumentParser:
    """``--target``: what the verb drives (local starts the engine); ``--engine-*``: which vLLM
    the local target starts (default .venv-engine's CPU build; docs/local-engine.md)."""
    p = _parent()
    p.add_argument("--target", default=env_default("TARGET"), choices=TARGETS)
    p.add_argument("--engine-python", action=_ToEnvironment, metavar="PYTHON",
                   help="local target: another vLLM's interpreter, e.g. a GPU build's python3 (INFERLAB_ENGINE_PYTHON)")
    p.add_argument("--engine-model", action=_ToEnvironment, metavar="PATH|ID",
                   help="local target: the model that vLLM serves (INFERLAB_ENGINE_MODEL)")
    p.add_argument("--engine-device", action=_ToEnvironment, metavar="cpu|cuda|cuda:N",
                   help="local target: the engine's device (INFERLAB_ENGINE_DEVICE; default cuda with "
                        "--engine-python, else cpu); CPU-only defaults (dtype, taskset) apply to cpu only")
    return p


def base_url(default: str | None = None) -> argparse.ArgumentParser:
    """``--base-url``: the server's URL; ``default`` where the environment sets none (runs: None,
    the target decides; tools for a running server: the local engine's)."""
    p = _parent()
    p.add_argument("--base-url", default=env_default("BASE_URL") or default)
    return p


def spec_sets() -> argparse.ArgumentParser:
    """``--set KEY=VALUE``: spec overrides (specs.resolve.parse_overrides)."""
    p = _parent()
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field (YAML value, dotted keys), e.g. --set model=smollm2 "
                        "--set slo.e2e_ms=5000; repeatable, recorded in the manifest's spec")
    return p


def observers(prometheus_help: str, prometheus_url_help: str) -> argparse.ArgumentParser:
    """``--edge``, ``--prometheus``, ``--prometheus-url``: observers added to the spec's
    (commands.with_observers); the help says what one window is for the verb."""
    p = _parent()
    p.add_argument("--edge", action="store_true", default=env_flag("EDGE"),
                   help="run through the local edge: nginx as the ingress is (TLS with a project CA, limit_req, "
                        "600 s timeouts, JSON access log joined to k6 rows by X-Request-Id)")
    p.add_argument("--prometheus", action="store_true", help=prometheus_help)
    p.add_argument("--prometheus-url", default=env_default("PROMETHEUS_URL") or None, help=prometheus_url_help)
    return p


def ab_repeats(orders: tuple[str, ...] = ORDERS, title: str | None = None) -> argparse.ArgumentParser:
    """The design of an interleaved A/B (sweep.ab.run_comparison): ``--pairs``, ``--order`` (one
    of ``orders``, the first the default), ``--seed``, ``--label``. ``title``: listed under that
    heading."""
    return _ab_options(orders, title)


def ab_run(other: str, orders: tuple[str, ...] = ORDERS, title: str | None = None) -> argparse.ArgumentParser:
    """The options of an interleaved A/B run of two specs (commands.run_ab reads them): those of
    :func:`ab_repeats`, per side ``--set-baseline``/``--set-<other>`` and
    ``--overlay-baseline``/``--overlay-<other>`` (``other``: the other side's name), and
    ``--resume`` (continue a cut comparison as recorded). ``title``: listed under that heading."""
    return _ab_options(orders, title, other)


def _ab_options(orders: tuple[str, ...], title: str | None, other: str | None = None) -> argparse.ArgumentParser:
    """``--pairs``/``--order``/``--seed`` parse to None when not given (so that ``--resume`` can
    refuse the ones given); their defaults are ``ab_defaults``, one place for both verbs."""
    p = _parent()
    g = p.add_argument_group(title) if title else p
    g.add_argument("--pairs", type=int, default=None,
                   help="interleaved pairs (repeats a side), at least 3 for a verdict (default 3)")
    g.add_argument("--order", default=None, choices=list(orders),
                   help="; ".join(ORDER_HELP[x] + (" (the default)" if x == orders[0] else "") for x in orders))
    g.add_argument("--seed", type=int, default=None, help="the random order's seed (default 0)")
    g.add_argument("--label", default=None)
    sides = ("baseline", other) if other else ()
    for side in sides:
        g.add_argument(f"--set-{side}", action="append", default=[], metavar="KEY=VALUE")
    for side in sides:
        g.add_argument(f"--overlay-{side}", help=f"TARGET=k8s: overlay deployed before each {side} repeat")
    if other:  # two specs: a comparison record that can be resumed
        g.add_argument("--resume", metavar="COMPARISON_ID",
                       help="continue a comparison that Ctrl-C or a time limit cut (partial): its recorded specs, "
                            "overlays, target and planned order; no spec or A/B option may be given with it")
    p.set_defaults(ab_defaults={"pairs": 3, "order": orders[0], "seed": 0})
    return p


def ab_design(a) -> dict:
    """``pairs``, ``order`` and ``seed`` of parsed arguments (:func:`_ab_options`), each its
    ``ab_defaults`` value where not given."""
    return {k: a.ab_defaults[k] if getattr(a, k) is None else getattr(a, k) for k in a.ab_defaults}


def ab_primary(choices: list[str], default: str | None = "throughput") -> argparse.ArgumentParser:
    """``--primary``: the metric that carries an A/B's verdict (``choices``; a capacity spec's is
    its max sustainable rate whatever is given). ``default`` None: not given parses to None (ab's
    ``--resume`` refuses a given one; the run's default is then throughput)."""
    p = _parent()
    p.add_argument("--primary", default=default, choices=choices,
                   help="the metric that carries the verdict (default throughput; capacity specs: max_sustainable_rate)")
    return p


def answer_check() -> argparse.ArgumentParser:
    """``--no-answer-check``: skip the A/B's answer check (sweep/answer_check.py)."""
    p = _parent()
    p.add_argument("--no-answer-check", action="store_true",
                   help="skip the answer check (the prompt set, greedy, on both sides' engines while up)")
    return p


def answer_check_size() -> argparse.ArgumentParser:
    """``--answer-tokens``, ``--answer-prompts``: the longest answer the A/B's answer check asks
    for and how many of the set's prompts (not given: MAX_TOKENS and the whole set,
    sweep/answer_check.py); the comparison records both, so a resume refuses them."""
    p = _parent()
    p.add_argument("--answer-tokens", type=_positive_int, default=None, metavar="N",
                   help=f"the answer check's longest answer in tokens (default {ANSWER_TOKENS}: 3 passes of "
                        f"{ANSWER_PROMPTS} prompts; fewer tokens check less of each answer and take less time on a slow engine)")
    p.add_argument("--answer-prompts", type=_prompt_count, default=None, metavar="N",
                   help=f"ask the first N of the answer check's {ANSWER_PROMPTS} prompts (default all; the set is in a "
                        "seeded random order, so any first N mix its kinds): fewer prompts find fewer changed answers, "
                        "in less time on a slow engine")
    return p


def _positive_int(text: str) -> int:
    """A count of at least 1; anything else is a usage error (exit 2) that says what was expected."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a whole number of at least 1")
    return n


def _prompt_count(text: str) -> int:
    """``--answer-prompts``: 1 to the prompt set's size; anything else is a usage error (exit 2)."""
    n = _positive_int(text)
    if n > ANSWER_PROMPTS:
        raise argparse.ArgumentTypeError(f"{text}: the answer check's prompt set has {ANSWER_PROMPTS} prompts")
    return n


def _alpha(text: str) -> float:
    """An ``--alpha`` value: a level between 0 and 0.5; anything else is a usage error (exit 2)
    that says what was expected."""
    try:
        x = float(text)
        ok = 0 < x < 0.5
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"{text}: expected a level between 0 and 0.5")
    return x


def alpha() -> argparse.ArgumentParser:
    """``--alpha``: the error rate of each of the gate's one-sided tests."""
    p = _parent()
    p.add_argument("--alpha", type=_alpha, default=0.05, help="error rate of each one-sided test (default 0.05)")
    return p


def overlay() -> argparse.ArgumentParser:
    """``--overlay``: which platform/overlays/<name> to deploy or remove."""
    p = _parent()
    p.add_argument("--overlay", default=env_default("OVERLAY"))
    return p


def _margin(text: str) -> float:
    """A ``--margin`` value (analysis.equivalence.parse_margin, imported only when one is given);
    a bad one is a usage error (exit 2) that says what was expected."""
    from ..analysis.equivalence import parse_margin

    try:
        return parse_margin(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def margin(required: bool) -> argparse.ArgumentParser:
    """``--margin``: the equivalence / non-inferiority margin, e.g. ``5%`` (analysis.equivalence:
    symmetric on the log scale, the ratio band [1/1.05, 1.05])."""
    p = _parent()
    p.add_argument("--margin", type=_margin, required=required, default=None, metavar="PCT",
                   help="margin, e.g. 5%% (the ratio band [1/1.05, 1.05], symmetric on the log scale)")
    return p
