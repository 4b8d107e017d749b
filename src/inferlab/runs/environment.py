"""What produced a run: versions and host facts for the manifest (STYLE 10).

GPU facts come from NVML (nvidia-ml-py) when a driver is present; otherwise the manifest says
why there is none. Nothing here raises for a missing tool: absence is recorded, not fatal.
"""

from __future__ import annotations

import platform
import socket
import os
import subprocess
import time
from pathlib import Path

import psutil

from .. import __version__, machine
from .manifest import GpuInfo, HostInfo, Versions


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """(HEAD, dirty) of the checkout at ``root``. ``$INFERLAB_GIT_SHA``, where set, wins, dirty
    unknown: scripts/gpu/device.sh sets it from the tree's ``.gpu-run-source`` because the GPU
    host's copy of the working tree may carry a ``.git`` that is not this tree's (the 2026-12-04
    H200 runs recorded the session's first HEAD, f8af3ed, "dirty", for a tree cut from c1192d9)."""
    if os.environ.get("INFERLAB_GIT_SHA"):
        return os.environ["INFERLAB_GIT_SHA"], None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True).stdout.strip())
        return sha, dirty
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("INFERLAB_GIT_SHA") or None, None


def k6_version(k6_bin: str | None) -> str | None:
    if not k6_bin:
        return None
    try:
        out = subprocess.run([k6_bin, "version"], capture_output=True, text=True, timeout=30).stdout
        return out.split()[1] if out.startswith("k6") else out.strip() or None
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return None


def versions(root: Path, k6_bin: str | None, vllm: str | None) -> Versions:
    sha, dirty = git_state(root)
    return Versions(inferlab=__version__, git_sha=sha, git_dirty=dirty, k6=k6_version(k6_bin),
                    vllm=vllm, python=platform.python_version())


def nvml_gpus() -> tuple[list[GpuInfo], str]:
    """GPUs via NVML, or ([], why-not)."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"no NVIDIA driver/GPU (NVML: {exc})"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**20
            gpus.append(GpuInfo(index=i, name=name if isinstance(name, str) else name.decode(),
                                driver=driver if isinstance(driver, str) else driver.decode(), memory_total_mib=mem))
        return gpus, ""
    finally:
        pynvml.nvmlShutdown()


def host_info(same_host: bool | None, pinning: str = "") -> HostInfo:
    gpus, note = nvml_gpus()
    offset = -time.altzone if time.localtime().tm_isdst > 0 else -time.timezone
    return HostInfo(
        hostname=socket.gethostname(), cpu_model=machine.cpu_model(), cpu_flags=machine.relevant_cpu_flags(),
        cores=psutil.cpu_count() or 0,
        memory_gib=round(psutil.virtual_memory().total / 2**30, 2), utc_offset_minutes=offset // 60,
        os=f"{platform.system()} {platform.release()}", gpus=gpus, gpu_note=note,
        client_server_same_host=same_host, cpu_pinning=pinning,
    )
