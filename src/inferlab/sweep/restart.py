"""Put a tune candidate's engine arguments in place before its capacity search.

- ``local``: nothing here; the local target starts a fresh engine per run with ``spec.engine.args``.
- ``url``: a user-supplied shell command restarts the user's server. It comes from the
  environment (``INFERLAB_TUNE_RESTART_COMMAND``) or a file the tune spec names, never from
  inferlab's argv; it gets the candidate's arguments in ``INFERLAB_ENGINE_ARGS`` (shell-quoted,
  space-joined) and the trial number in ``INFERLAB_TUNE_TRIAL``; then ``/health`` must answer.
- ``k8s``: a strategic-merge patch of the vllm Deployment's container ``vllm`` (by name) with the
  whole argument list, then a wait for the rollout; :func:`k8s_restore` puts the original back.

Each returns '' when the candidate is serving, else why not (the trial is then recorded as
failed, not raised).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

from ..procs import wait_for_health

RESTART_ENV = "INFERLAB_TUNE_RESTART_COMMAND"
NAMESPACE, DEPLOYMENT, CONTAINER = "inferlab", "vllm", "vllm"


def restart_command(spec_file: str | None, relative_to: Path | None = None) -> str:
    """The url target's restart command: the environment's, else the file's (stripped)."""
    cmd = os.environ.get(RESTART_ENV, "").strip()
    if cmd:
        return cmd
    if spec_file:
        p = Path(spec_file)
        p = relative_to / p if relative_to and not p.is_absolute() else p
        try:
            cmd = p.read_text().strip()
        except OSError as exc:
            raise ValueError(f"restart_command_file {p}: {exc}") from None
        if cmd:
            return cmd
    raise ValueError(f"target url: set {RESTART_ENV} or restart_command_file in the tune spec (a shell command that "
                     "restarts the server with $INFERLAB_ENGINE_ARGS); without it the server cannot change settings")


def url_restart(command: str, args: list[str], trial: int, base_url: str, timeout_s: float,
                verify_tls: bool = True) -> str:
    """Run the restart command, then wait for ``base_url``/health to answer 200."""
    env = {**os.environ, "INFERLAB_ENGINE_ARGS": shlex.join(args), "INFERLAB_TUNE_TRIAL": str(trial)}
    env.pop("INFERLAB_API_KEY", None)  # the user's command has its own way to the key, not ours
    proc = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        return f"restart command exited {proc.returncode}: {(proc.stderr or proc.stdout)[-500:]}"
    if wait_for_health(None, f"{base_url.rstrip('/')}/health", time.monotonic() + timeout_s, interval_s=2,
                       request_timeout_s=5, verify=verify_tls) == "healthy":
        return ""
    return f"{base_url}/health did not answer 200 within {timeout_s:.0f} s after the restart command"


def _deployments():
    from ..kube import cluster_client

    dyn = cluster_client()
    if dyn is None:
        raise RuntimeError("target k8s: no Kubernetes cluster reachable (kubeconfig) to change the engine's arguments")
    return dyn, dyn.resources.get(api_version="apps/v1", kind="Deployment")


def k8s_current_args() -> list[str]:
    """The vllm container's arguments as deployed now (the base the candidates change)."""
    _, deps = _deployments()
    d = deps.get(name=DEPLOYMENT, namespace=NAMESPACE)
    c = next((c for c in d.spec.template.spec.containers if c.name == CONTAINER), None)
    if c is None:
        raise RuntimeError(f"Deployment {NAMESPACE}/{DEPLOYMENT} has no container {CONTAINER!r}")
    return list(c.args or [])


def k8s_apply(args: list[str], timeout_s: int = 900) -> str:
    """Patch the container's whole argument list (strategic merge, by container name) and wait."""
    from ..platform.deploy import wait_rollout

    dyn, deps = _deployments()
    body = {"spec": {"template": {"spec": {"containers": [{"name": CONTAINER, "args": args}]}}}}
    deps.patch(name=DEPLOYMENT, namespace=NAMESPACE, body=body, content_type="application/strategic-merge-patch+json")
    ok, msg = wait_rollout(dyn, NAMESPACE, DEPLOYMENT, timeout_s)
    return "" if ok else f"rollout with the candidate's arguments did not complete: {msg}"


def k8s_restore(args: list[str]) -> str:
    return k8s_apply(args)
