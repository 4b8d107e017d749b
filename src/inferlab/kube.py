"""Kubernetes client helpers shared by deploy, the k8s target and in-cluster load: a leaf
module (it imports only the kubernetes client, lazily), so nothing above it forms a cycle.
:func:`pod_exec` runs a command in a pod's container and returns its stdout as bytes (the k8s
target reads the tracing component's span files with it).

:class:`KubeExec` lives here, not in ``load.incluster``: the k8s target builds one (the cluster
side of in-cluster load) and the sweep hands it to ``load.incluster.run_cell_in_cluster``;
a target importing the load stage would cross the write side's stages (docs/architecture.md).
It is also the API boundary of in-cluster load: everything ``load.incluster`` and
``load.testrun`` ask of the cluster goes through its few methods (apply, delete, status,
serves, pods, pod_log, exec_in), which is where tests put their fake cluster.

The k6-operator facts (its TestRun kind, the release whose CRD ``platform/schemas/TestRun.json``
is written from, how to install it) live here too: deploy's preflight names the operator and
in-cluster load decides by the same kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Waiting reasons that never resolve by themselves (wrong image, missing Secret/ConfigMap key)
STUCK = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
Exec = Callable[[list[str]], bytes]  # run a command where the results are, return its stdout
COLLECTOR = "collector"  # the container of a k6 pod (or collector Pod) that holds the results for exec

# grafana/k6-operator: the kind inferlab creates, and the release its schema is written from
K6_OPERATOR_KIND = ("k6.io/v1alpha1", "TestRun")
K6_OPERATOR_RELEASE = "v1.1.1"
K6_OPERATOR_INSTALL = (f"the k6-operator {K6_OPERATOR_RELEASE} (kubectl apply --server-side -f "
                       f"https://raw.githubusercontent.com/grafana/k6-operator/{K6_OPERATOR_RELEASE}/bundle.yaml, "
                       "or helm install k6-operator grafana/k6-operator -n k6-operator-system --create-namespace "
                       "with the chart version of that release)")


def cluster_client():
    """A DynamicClient for the current kube context, or None when no cluster is reachable."""
    try:
        from kubernetes import client, config, dynamic

        config.load_kube_config()
        api = client.ApiClient()
        client.VersionApi(api).get_code(_request_timeout=5)
        return dynamic.DynamicClient(api)
    except Exception:  # noqa: BLE001 - any failure here means "no usable cluster"
        return None


def serves(dyn, api_version: str, kind: str) -> bool:
    """Whether the API server serves the kind (the client's discovery); errors other than
    "not found" (network, auth) propagate."""
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    try:
        dyn.resources.get(api_version=api_version, kind=kind)
    except ResourceNotFoundError:
        return False
    return True


def stuck(pod) -> str | None:
    """Why a pod can never start by itself (a waiting reason of :data:`STUCK` on any of its
    containers), or None."""
    for c in [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]:
        waiting = c.state.waiting if c.state else None
        if waiting is not None and waiting.reason in STUCK:
            return f"pod {pod.metadata.name} container {c.name}: {waiting.reason}: {waiting.message or ''}".strip()
    return None


def apply(dyn, doc: dict) -> None:
    """Server-side apply of one object, owned by the field manager ``inferlab``."""
    res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    ns = doc["metadata"].get("namespace")
    res.server_side_apply(body=doc, name=doc["metadata"]["name"], namespace=ns, field_manager="inferlab",
                          force_conflicts=True)


def pod_exec(api_client, namespace: str, pod: str, container: str, command: list[str],
             timeout_s: float | None = 120, check: bool = True) -> bytes:
    """``command`` run in ``container`` of ``pod`` through the API server (``kubectl exec``'s
    call); its stdout, byte for byte (binary frames: text mode decodes each websocket frame
    alone and would mangle a character split between two). RuntimeError with its stderr when it
    exits non-zero (``check``; False: the caller's command says how it failed in its output),
    TimeoutError after ``timeout_s`` (None: no limit)."""
    from kubernetes import client
    from kubernetes.stream import stream

    resp = stream(client.CoreV1Api(api_client).connect_get_namespaced_pod_exec, pod, namespace, container=container,
                  command=command, stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False,
                  binary=True)
    deadline = time.monotonic() + timeout_s if timeout_s is not None else float("inf")
    try:
        while resp.is_open():
            if time.monotonic() > deadline:
                raise TimeoutError(f"exec {command[0]} in {pod}/{container}: no end after {timeout_s:.0f}s")
            resp.update(timeout=min(5.0, max(0.1, deadline - time.monotonic())))
        out, err = resp.read_stdout(), resp.read_stderr()
        try:
            code = resp.returncode  # from the status the API server sends at the end
        except (TypeError, KeyError, IndexError, ValueError):
            code = None  # no status frame: nothing says it failed
    finally:
        resp.close()
    if code and check:
        why = err.decode(errors="replace")[-300:]
        raise RuntimeError(f"exec {command[0]} in {pod}/{container}: exit {code}: {why}")
    return out


class KubeExec:
    """In-cluster load's view of the cluster (a kubernetes ApiClient, one namespace): the
    objects of a cell are applied, watched, read and deleted through these methods only."""

    def __init__(self, api_client, namespace: str, secret_name: str, service_url: str) -> None:
        from kubernetes import client

        self.api, self.core, self.batch = api_client, client.CoreV1Api(api_client), client.BatchV1Api(api_client)
        self.namespace, self.secret_name, self.service_url = namespace, secret_name, service_url
        self._dyn = None
        self._serves: dict[tuple[str, str], bool] = {}

    @property
    def dyn(self):
        """A DynamicClient on the same ApiClient, made on first use (it reads the API's discovery)."""
        if self._dyn is None:
            from kubernetes import dynamic

            self._dyn = dynamic.DynamicClient(self.api)
        return self._dyn

    def serves(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves the kind, asked once per KubeExec (a run's cells and its
        note share the answer: an operator installed mid-run is not switched to)."""
        key = (api_version, kind)
        if key not in self._serves:
            self._serves[key] = serves(self.dyn, api_version, kind)
        return self._serves[key]

    def apply(self, doc: dict) -> None:
        apply(self.dyn, doc)

    def delete(self, doc: dict) -> None:
        """Delete an object applied earlier (its dependents in the background); gone already is fine."""
        from kubernetes.dynamic.exceptions import NotFoundError

        res = self.dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        try:
            res.delete(name=doc["metadata"]["name"], namespace=self.namespace, propagation_policy="Background")
        except NotFoundError:
            pass

    def status(self, doc: dict) -> dict:
        """The object's ``status`` as the API returns it ({} before a controller wrote one)."""
        res = self.dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        return (res.get(name=doc["metadata"]["name"], namespace=self.namespace).to_dict().get("status")) or {}

    def pods(self, selector: str) -> list:
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def pod_log(self, pod: str, container: str) -> bytes:
        """A container's whole log, raw bytes (k6 runs with --quiet: a few lines, not its results)."""
        return self.core.read_namespaced_pod_log(pod, self.namespace, container=container, _preload_content=False).data

    def exec_in(self, pod: str) -> Exec:
        """Run commands in the pod's :data:`COLLECTOR` container (the one that holds the results):
        :func:`pod_exec` without a time limit or an exit-code check, as the collection's commands
        report their own failures (``|| echo -1``)."""
        return lambda command: pod_exec(self.api, self.namespace, pod, COLLECTOR, command, timeout_s=None,
                                        check=False)

    def pods_ready_to_collect(self, job: str, n: int, timeout_s: float, on_state, poll_s: float = 3) -> dict[int, str]:
        """Wait until every pod's k6 init container has finished; {completion index: pod name}."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pods = self.pods(f"job-name={job}")
            done = {}
            for p in pods:
                st = (p.status.init_container_statuses or [None])[0]
                if p.status.phase == "Failed":
                    raise RuntimeError(f"k6 pod {p.metadata.name} failed: {p.status.reason or p.status.message}")
                why = stuck(p)
                if why:  # fail now, not at the deadline
                    raise RuntimeError(f"k6 {why}")
                if st is not None and st.state.terminated is not None:
                    done[int(p.metadata.annotations["batch.kubernetes.io/job-completion-index"])] = p.metadata.name
            on_state(f"{len(done)}/{n} k6 pods finished, {len(pods)} created")
            if len(done) == n:
                return done
            time.sleep(poll_s)
        raise TimeoutError(f"k6 Job {job}: not finished after {timeout_s:.0f}s")
