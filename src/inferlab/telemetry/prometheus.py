"""A local Prometheus for one run (Debian's ``prometheus``), and the alert rules it evaluates.

Contract:
- Its own scratch directory per run (``tempfile.mkdtemp``, 0700): config, rules, TSDB, log,
  and the bearer token in a 0600 file that the config names (``credentials_file``); the key is
  never on a command line or in a file kept in the run.
- Listens on ``127.0.0.1:<free port>`` only; scrapes each target every second and evaluates the
  rules every second. No remote write, no alertmanager, nothing but loopback scrapes
  (Prometheus 2.x has no usage reporting to switch off).
- Rules: ``spec.groups`` of the platform's PrometheusRule
  (``platform/components/monitoring/vllm-prometheusrule.yaml``), read at start: one source, no
  copy. :class:`RuleProfile` ``test`` shortens ``for:`` and range windows (never a threshold);
  the effective rules file and the profile go into the run.
- Stopped on every exit path (:class:`inferlab.procs.ManagedProcess`); the scratch directory
  is removed. :meth:`LocalPrometheus.save` writes the run window first (:mod:`.prom_query`).
"""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx
import yaml
from pydantic import Field

from .. import paths
from ..procs import ManagedProcess, port_taken
from ..runs.store import RunWriter
from ..specs.models import StrictModel
from ..tools import ToolNotFound, find_tool
from .metrics_sampler import ScrapeTarget
from .prom_query import ALERTS_QUERY, VLLM_QUERY, save_window

RULE_SOURCE = Path("platform/components/monitoring/vllm-prometheusrule.yaml")
DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
RANGE = re.compile(r"\[(\d+(?:ms|s|m|h|d|w|y))(:[^\]]*)?\]")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class PrometheusError(RuntimeError):
    """The local Prometheus could not start or its configuration is wrong."""


class RuleProfile(StrictModel):
    """How the platform's rules are evaluated in a run. ``platform``: as shipped. ``test``: every
    ``for:`` capped at ``for_s`` and every range selector (``[5m]``) set to ``range_s``, so an
    alert can be seen pending and firing within a short run. Thresholds are never changed."""

    name: Literal["platform", "test"] = "platform"
    for_s: int = Field(10, gt=0, description="test: cap on every rule's `for:`")
    range_s: int = Field(20, ge=2, description="test: every range selector, e.g. rate(x[5m]) -> rate(x[20s])")


PLATFORM = RuleProfile()
TEST = RuleProfile(name="test")


def seconds(duration: str) -> float:
    m = DURATION.match(duration)
    if not m:
        raise PrometheusError(f"{RULE_SOURCE}: duration {duration!r} is not <number><ms|s|m|h|d|w|y>")
    return int(m.group(1)) * _SECONDS[m.group(2)]


def platform_rule_groups(root: Path | None = None) -> list[dict]:
    """``spec.groups`` of the platform's PrometheusRule, as written there."""
    path = (root or paths.install_root()) / RULE_SOURCE
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or doc.get("kind") != "PrometheusRule" or not doc.get("spec", {}).get("groups"):
        raise PrometheusError(f"{path}: expected a PrometheusRule with spec.groups")
    return doc["spec"]["groups"]


def apply_profile(groups: list[dict], profile: RuleProfile) -> list[dict]:
    """The rule groups as evaluated under ``profile`` (a new structure; input untouched)."""
    out = []
    for g in groups:
        rules = []
        for r in g["rules"]:
            r = dict(r)
            if profile.name == "test":
                r["expr"] = RANGE.sub(lambda m: f"[{profile.range_s}s{m.group(2) or ''}]", r["expr"])
                if "for" in r and seconds(r["for"]) > profile.for_s:
                    r["for"] = f"{profile.for_s}s"
                # every ALERTS series then says it was evaluated under the test profile
                r["labels"] = {**(r.get("labels") or {}), "rule_profile": "test"}
            rules.append(r)
        out.append({**{k: v for k, v in g.items() if k != "interval"}, "rules": rules})  # evaluated every 1 s
    return out


def rules_yaml(profile: RuleProfile = PLATFORM, root: Path | None = None) -> str:
    return f"# generated from {RULE_SOURCE} (spec.groups), profile {profile.name}: {profile.model_dump_json()}\n" + \
        yaml.safe_dump({"groups": apply_profile(platform_rule_groups(root), profile)}, sort_keys=False)


def _scrape_config(t: ScrapeTarget, token_file: Path | None) -> dict:
    u = urlsplit(t.metrics_url)
    cfg: dict = {"job_name": t.job, "scheme": u.scheme, "metrics_path": u.path or "/metrics",
                 "static_configs": [{"targets": [u.netloc]}]}
    other = {k for k in t.headers if k.lower() != "authorization"}
    if other:
        raise PrometheusError(f"scrape target {t.job}: Prometheus cannot send headers {sorted(other)}")
    if token_file is not None:
        cfg["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
    if u.scheme == "https":
        cfg["tls_config"] = {"ca_file": t.verify_tls} if isinstance(t.verify_tls, str) else \
            {"insecure_skip_verify": not t.verify_tls}
    return cfg


class LocalPrometheus(ManagedProcess):
    """``with LocalPrometheus([ScrapeTarget(...)], TEST) as p: ...; p.save(w)`` (save before exit).

    ``url`` is its loopback HTTP API; ``started_at`` is when it became ready (the window start).
    Its own session: a Ctrl-C on the terminal reaches us, not Prometheus, so the window is
    still saved before stop() ends it."""

    def __init__(self, targets: list[ScrapeTarget], profile: RuleProfile = PLATFORM, ready_timeout_s: float = 30) -> None:
        self.targets, self.profile = targets, profile
        self.dir: Path | None = None
        self.url = ""
        self.started_at: datetime | None = None
        self.config_text = self.rules_text = ""
        super().__init__(name="prometheus", error=PrometheusError, timeout_s=ready_timeout_s, poll_s=0.2)

    def _write_config(self) -> Path:
        assert self.dir is not None
        scrapes = []
        for t in self.targets:
            auth = t.headers.get("Authorization") or t.headers.get("authorization")
            token_file = None
            if auth:
                if not auth.startswith("Bearer "):
                    raise PrometheusError(f"scrape target {t.job}: only a Bearer Authorization header is supported")
                token_file = self.dir / f"{t.job}.token"
                token_file.touch(mode=0o600)
                token_file.write_text(auth.removeprefix("Bearer "))
            scrapes.append(_scrape_config(t, token_file))
        self.rules_text = rules_yaml(self.profile)
        (self.dir / "rules.yml").write_text(self.rules_text)
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(self.dir / "rules.yml")], "scrape_configs": scrapes}
        self.config_text = yaml.safe_dump(config, sort_keys=False)
        (self.dir / "prometheus.yml").write_text(self.config_text)
        return self.dir / "prometheus.yml"

    def prepare(self) -> None:
        exe = find_tool("prometheus")
        self.dir = self.cwd = self.scratch_dir("inferlab-prometheus-")  # 0700
        config = self._write_config()
        port = self.lease_port(9091)  # leased until stop(); another program that takes it first: start() tries again
        self.url = f"http://127.0.0.1:{port}"
        self.health, self.log = self._ready_and_ours, self.dir / "prometheus.log"
        self.argv = [exe, f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
                     f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=2d", "--log.level=info"]

    def _ready_and_ours(self) -> bool:
        """Ready, and this Prometheus: its storage path is ours. Decision: the port is only
        free when chosen, so another Prometheus (a second run or test on this machine, also
        preferring 9091) may answer there; without this check a start that failed was once taken
        for ready (2026-12-06, two xdist processes)."""
        if httpx.get(f"{self.url}/-/ready", timeout=2).status_code != 200:
            return False
        r = httpx.get(f"{self.url}/api/v1/status/flags", timeout=2)
        return r.status_code == 200 and r.json().get("data", {}).get("storage.tsdb.path") == str(self.dir / "data")

    def port_was_taken(self) -> bool:
        """Its log says the listen address was in use: another program (not an inferlab child:
        those lease their ports) bound the port between its choice and this start."""
        return port_taken(self.log_tail(10))

    def start(self, timeout_s: float | None = None) -> LocalPrometheus:
        super().start(timeout_s)
        self.started_at = datetime.now(UTC)
        return self

    def wait_up(self, timeout_s: float = 10) -> dict[str, str]:
        """{job: health} once every target has been scraped (or at the timeout)."""
        deadline, health = time.monotonic() + timeout_s, {}
        while time.monotonic() < deadline:
            r = httpx.get(f"{self.url}/api/v1/targets", timeout=5).json()
            health = {t["labels"]["job"]: t["health"] for t in r["data"]["activeTargets"]}
            if health and all(h != "unknown" for h in health.values()):
                break
            time.sleep(0.3)
        return health

    def save(self, w: RunWriter, end: datetime | None = None) -> str:
        """Write the window [ready, end] (vLLM series, every extra job's series, ALERTS), the
        rules and config it ran with, and its log into the run. Returns the folder."""
        assert self.started_at is not None, "start() first"
        time.sleep(1.2)  # one more scrape and rule evaluation, so the window's last second is in
        end = end or datetime.now(UTC)
        queries = {"vllm": VLLM_QUERY, "alerts": ALERTS_QUERY}
        queries |= {t.job: f'{{job="{t.job}"}}' for t in self.targets if t.job != "vllm"}
        folder = save_window(w, self.url, self.started_at, end, queries, step_s=1.0, source="local",
                             extra_meta={"rule_profile": self.profile.model_dump(), "rule_source": str(RULE_SOURCE),
                                         "prometheus_version": _version()})
        w.write_text(f"{folder}/rules.yml", self.rules_text)
        w.write_text(f"{folder}/prometheus.yml", self.config_text)
        w.write_bytes(f"{folder}/prometheus.log", (self.dir / "prometheus.log").read_bytes())  # type: ignore[operator]
        return folder

    def stop(self) -> None:
        super().stop()
        self.dir = None


def _version() -> str:
    try:
        out = subprocess.run([find_tool("prometheus"), "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError, ToolNotFound):
        return "unknown"
