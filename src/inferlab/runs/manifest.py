"""The run manifest (``run.json``): a strict, versioned pydantic model.

It records what produced the run (versions, host, target, engine arguments, resolved spec),
what state it is in, and every file with its sha256 and size. It never holds a secret: the
API key is referred to by where it lives, not by value (tests scan for it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ..specs import CellPlan, StrictModel

SCHEMA_VERSION = 1
RunStatus = Literal["running", "complete", "partial", "failed"]
CellStatus = Literal["pending", "running", "complete", "failed", "partial", "skipped"]
# a run's reason when Ctrl-C or a time limit's SIGTERM cut it (sweep/runner.py writes it)
CUT_BY_USER = "interrupted by the user (Ctrl-C); `--resume` adds the missing cells"


Strict = StrictModel


class FileEntry(Strict):
    path: str = Field(description="relative to the run directory")
    sha256: str
    bytes: int = Field(ge=0)


class GpuInfo(Strict):
    index: int
    name: str
    driver: str | None = None
    memory_total_mib: float | None = None


class HostInfo(Strict):
    hostname: str
    cpu_model: str
    cores: int
    memory_gib: float | None = Field(None, description="None when not recorded (imported runs)")
    utc_offset_minutes: int = Field(description="local time minus UTC; nvidia-smi stamps local time")
    os: str = ""
    gpus: list[GpuInfo] = Field(default_factory=list)
    gpu_note: str = Field("", description="why no GPU telemetry, when there is none")
    client_server_same_host: bool | None = None
    cpu_pinning: str = Field("", description="taskset pinning of engine and k6, if any")
    cpu_flags: list[str] = Field(default_factory=list, description="the CPU flags that decide engine speed "
                                 "(machine.relevant_cpu_flags()); [] when not recorded (older or imported runs)")


class Versions(Strict):
    inferlab: str
    git_sha: str | None = None
    git_dirty: bool | None = None
    k6: str | None = None
    vllm: str | None = Field(None, description="from the server's /version")
    python: str


class TargetInfo(Strict):
    kind: Literal["local", "url", "k8s"]
    base_url: str
    model: str
    served_model_name: str | None = None
    engine_args: list[str] = Field(default_factory=list)
    engine_env: dict[str, str] = Field(default_factory=dict, description="non-secret engine environment")
    startup_s: float | None = None
    tls_skip_verify: bool = False
    deployment: dict[str, Any] = Field(default_factory=dict, description="k8s: overlay, image digests, node GPU labels")
    process: dict[str, Any] = Field(default_factory=dict, description="an engine inferlab started: pid, started_at, "
                                    "stopped_at (a comparison checks that each repeat had its own)")


class CellRecord(CellPlan):
    """A planned cell plus what happened to it."""

    status: CellStatus = "pending"
    reason: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    k6_exit_code: int | None = None
    thresholds_passed: bool | None = None
    warmup_requests: int = 0
    probe_requests: int = 0
    stderr_tail: str = ""


class WriterInfo(Strict):
    pid: int
    hostname: str
    process_started: float = Field(description="psutil create_time of the writer, guards against pid reuse")


class Manifest(Strict):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    kind: Literal["sweep", "stress", "capacity", "imported"]
    label: str
    created_at: datetime
    ended_at: datetime | None = None
    status: RunStatus = "running"
    reason: str = ""
    writer: WriterInfo | None = None
    target: TargetInfo
    versions: Versions
    host: HostInfo
    spec: dict[str, Any] = Field(default_factory=dict, description="the resolved sweep/stress spec")
    cells: list[CellRecord] = Field(default_factory=list)
    files: list[FileEntry] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    source: str = Field("", description="where imported data came from")

    def cell(self, cell_id: str) -> CellRecord:
        for c in self.cells:
            if c.cell_id == cell_id:
                return c
        raise KeyError(f"run {self.run_id} has no cell {cell_id!r}")

    def cut_by_user(self) -> bool:
        """Ctrl-C or a SIGTERM ended it partial (it lost nothing: its unrun cells are not failures)."""
        return self.status == "partial" and self.reason.startswith("interrupted")
