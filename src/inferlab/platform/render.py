"""Render platform/ with plain ``kubectl kustomize`` (no flags) and read what an overlay runs.

Layout: ``base/`` (no CRDs needed), ``components/*`` (optional parts, kustomize Components),
``overlays/*`` (compositions), ``secrets/`` (the secretGenerators; their inputs in
``secrets/values/``, the project's one secrets folder, see :func:`inferlab.paths.secrets_dir`).
Needs only the main dependencies: ``inferlab deploy`` renders with it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from ..credentials import create_private
from ..paths import platform_dir
from ..tools import find_tool

# generator inputs that platform/secrets/kustomization.yaml reads from values/
SECRET_INPUTS = ("api-key", "chat-ui-htpasswd")
# kustomize's name-suffix hash: 10 characters of hex re-spelt without vowels and look-alikes
HASH_SUFFIX = re.compile(r"-[2456789bcdfghkmt]{10}$")
# the repository part of a vLLM image: vllm/vllm-openai, .../vllm-cpu-release-repo, ...
VLLM_REPO = re.compile(r"(^|/)vllm[^/]*$")
# the vLLM images' ENTRYPOINT: a component that sets the container's `command` (tracing) restates it
SERVE = ["vllm", "serve"]


def secret_inputs_dir() -> Path:
    return platform_dir() / "secrets" / "values"


def overlays() -> list[str]:
    return sorted(p.name for p in (platform_dir() / "overlays").iterdir() if (p / "kustomization.yaml").is_file())


def missing_secret_inputs() -> list[str]:
    return [n for n in SECRET_INPUTS if not (secret_inputs_dir() / n).is_file()]


@contextlib.contextmanager
def buildable_tree(throwaway_secrets: bool) -> Iterator[Path]:
    """A platform tree whose secretGenerators have their inputs: the real one when ``make
    secrets`` has run; else, with ``throwaway_secrets``, a private temporary copy with random
    inputs (the checkout is never written, so concurrent builds cannot remove each other's
    inputs); else a RuntimeError naming ``make secrets``."""
    missing = missing_secret_inputs()
    if not missing:
        yield platform_dir()
        return
    if not throwaway_secrets:
        raise RuntimeError(f"{secret_inputs_dir()}: no {', '.join(missing)}: run `make secrets` first")
    with tempfile.TemporaryDirectory(prefix="inferlab-platform-") as tmp:  # 0700
        tree = Path(tmp) / "platform"
        values = secret_inputs_dir()
        shutil.copytree(platform_dir(), tree, ignore=lambda d, names: ["values"] if Path(d) == values.parent else [])
        (tree / "secrets" / "values").mkdir(mode=0o700)
        for name in SECRET_INPUTS:
            create_private(tree / "secrets" / "values" / name, secrets.token_urlsafe(24))
        yield tree


def kustomize_build(overlay: str, throwaway_secrets: bool = True, images: list[dict] | None = None) -> list[dict]:
    """``kubectl kustomize platform/overlays/<overlay>``, no flags (every file an overlay reads
    lies inside platform/). The objects hold the API key when real secrets exist: keep them in
    memory. ``throwaway_secrets=False`` (deploy) refuses to render with made-up keys.
    ``images``: kustomize ``images:`` entries applied on top of the overlay (a bisect's build:
    :func:`engine_image_override`), by a kustomization in a temporary folder whose only resource
    is the overlay, so the checkout is never written."""
    with buildable_tree(throwaway_secrets) as tree, _on_top(tree / "overlays" / overlay, images) as root:
        proc = subprocess.run([find_tool("kubectl"), "kustomize", str(root)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"kustomize build of overlay {overlay!r}{' with ' + str(images) if images else ''} "
                           f"failed:\n{proc.stderr[-2000:]}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@contextlib.contextmanager
def _on_top(overlay_dir: Path, images: list[dict] | None) -> Iterator[Path]:
    """``overlay_dir`` itself, or with ``images`` a temporary kustomization of it with those
    image overrides (kustomize takes a resource folder by a relative path only)."""
    if not images:
        yield overlay_dir
        return
    with tempfile.TemporaryDirectory(prefix="inferlab-images-") as tmp:
        doc = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
               "resources": [os.path.relpath(overlay_dir, tmp)], "images": images}
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        yield Path(tmp)


def engine_container(docs: list[dict]) -> dict:
    """The one container that runs a vLLM image; ValueError unless there is exactly one."""
    found = [c for d in docs for c in pod_containers(d) if is_vllm_image(c.get("image", ""))]
    if len(found) != 1:
        raise ValueError(f"expected one vLLM container, found {len(found)}")
    return found[0]


def split_image(ref: str) -> tuple[str, str, str]:
    """``(name, tag, digest)`` of an image reference (``repo/name:tag``, ``repo/name@sha256:...``);
    a ``:`` in the registry's host:port is not a tag."""
    name, _, digest = ref.partition("@")
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest


def engine_image_override(overlay: str, image: str) -> dict:
    """The kustomize ``images:`` entry that runs ``overlay``'s engine with ``image``: a tag
    (``v0.31.0``: the overlay's own vLLM image at that tag) or a whole reference (its name,
    tag or digest). Matched by the name the overlay renders for the vLLM container (after its
    components' own overrides, e.g. the CPU image), so only the engine Deployment changes."""
    current, _, _ = split_image(engine_container(kustomize_build(overlay))["image"])
    if "/" not in image and ":" not in image and "@" not in image:
        return {"name": current, "newTag": image}
    name, tag, digest = split_image(image)
    return {"name": current, "newName": name, **({"digest": digest} if digest else {"newTag": tag})}


def is_vllm_image(image: str) -> bool:
    return bool(VLLM_REPO.search(split_image(image)[0]))


TESTRUN_PODS = ("initializer", "starter", "runner")  # the pods a k6-operator TestRun makes, one k6 container each


def pod_containers(doc: dict) -> list[dict]:
    """Init and regular containers of a workload's pod template or of a bare Pod; for a
    k6-operator TestRun, its initializer, starter and runner as the one container each pod
    gets (name, image, env, resources); [] for other kinds."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if kind == "TestRun":
        return [{"name": role, **spec[role]} for role in TESTRUN_PODS if role in spec]
    if kind == "Pod":
        pod = spec
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        pod = spec.get("template", {}).get("spec") or {}
    else:
        return []
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def env_shown(env: dict) -> str:
    """An env entry's value, or for ``valueFrom`` its reference (never the referenced value);
    generated names lose their content hash, which changes with every key."""
    if "value" in env:
        return str(env["value"])
    for kind, ref in (env.get("valueFrom") or {}).items():
        if kind in ("secretKeyRef", "configMapKeyRef"):
            return f"{kind}:{HASH_SUFFIX.sub('', ref['name'])}/{ref['key']}"
        return f"{kind}:{ref.get('fieldPath') or ref.get('resource')}"
    return ""


def engine_of(docs: list[dict]) -> dict:
    """``{"args": [...], "env": {name: value or reference}}`` of the one container that runs a
    vLLM image (:func:`engine_container`): its ``args``, the list engine profiles own."""
    c = engine_container(docs)
    return {"args": list(c.get("args", [])), "env": {e["name"]: env_shown(e) for e in c.get("env", [])}}


def engine_argv(docs: list[dict]) -> list[str]:
    """Every argument vLLM gets after ``vllm serve``: the container's ``command`` past
    :data:`SERVE` (the tracing component puts its flags there), then its ``args``. ValueError
    when a ``command`` does not start with ``vllm serve`` (it replaces the image's entrypoint)."""
    c = engine_container(docs)
    command = c.get("command") or SERVE
    if command[:len(SERVE)] != SERVE:
        raise ValueError(f"the vLLM container's command {command} does not start with {' '.join(SERVE)!r}")
    return [*command[len(SERVE):], *c.get("args", [])]


def effective_engine(overlay: str) -> dict:
    """What vLLM runs with in ``overlay``: its arguments and environment (see :func:`engine_of`)."""
    return engine_of(kustomize_build(overlay))
