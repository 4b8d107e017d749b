"""TARGET=k8s: reach the vLLM Service through ``kubectl port-forward`` (opened here, always
closed), or through the ingress when BASE_URL is given (``https://llm.local``, TLS skip-verify
from the spec). Where the tracing component runs (platform/components/tracing), the session
carries a reader of its Collector's span files (:func:`collector_reader`)."""

from __future__ import annotations

import contextlib
import json
import math
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from .. import credentials
from ..kube import KubeExec, cluster_client, pod_exec
from ..procs import interrupts_deferred, stop_process
from ..runs.manifest import TargetInfo
from ..formats.otlp import COLLECTOR_SPANS_FILE
from ..specs import LoadSpec
from ..tools import ToolNotFound, find_tool
from .session import TargetError, TargetSession

NAMESPACE, SERVICE, PORT = "inferlab", "vllm", 8000


@contextlib.contextmanager
def port_forward(namespace: str = NAMESPACE, service: str = SERVICE, port: int = PORT) -> Iterator[str]:
    try:
        kubectl = find_tool("kubectl")
    except ToolNotFound as exc:
        raise TargetError(f"{exc} (needed for TARGET=k8s port-forward)") from None
    proc = None
    try:
        with interrupts_deferred():  # held by us before a Ctrl-C can unwind past the spawn
            proc = subprocess.Popen([kubectl, "-n", namespace, "port-forward", f"svc/{service}",
                                     f"127.0.0.1:0:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = proc.stdout.readline() if proc.stdout else ""
        # only kubectl's success line: its errors mention 127.0.0.1:8080 (the default API server)
        m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
        if not m:
            raise TargetError(f"kubectl port-forward failed: {line.strip() or 'no output'} (is a cluster reachable?)")
        yield f"http://127.0.0.1:{m.group(1)}"
    finally:
        stop_process(proc)


def secret_name_of(api_client, namespace: str = NAMESPACE, deployment: str = SERVICE) -> str:
    """The API-key Secret's real name (kustomize adds a content hash), read from the Deployment."""
    from kubernetes import client

    dep = client.AppsV1Api(api_client).read_namespaced_deployment(deployment, namespace)
    for c in dep.spec.template.spec.containers:
        for e in c.env or []:
            if e.name == "VLLM_API_KEY" and e.value_from and e.value_from.secret_key_ref:
                return e.value_from.secret_key_ref.name
    raise RuntimeError(f"deployment/{deployment} in {namespace} has no VLLM_API_KEY secretKeyRef")


def pod_scraper(api_client, namespace: str = NAMESPACE, selector: str = "app.kubernetes.io/name=vllm",
                port: int = PORT):
    """A callable returning {pod: /metrics bytes} for every Running vLLM pod, through the API
    server's pod proxy: with replicas > 1 a scrape through the Service sees one pod only."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)

    def scrape() -> dict[str, bytes]:
        out = {}
        for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
            if pod.status.phase == "Running":
                resp = core.connect_get_namespaced_pod_proxy_with_path(
                    f"{pod.metadata.name}:{port}", namespace, "metrics", _preload_content=False)
                out[pod.metadata.name] = resp.data
        return out

    return scrape


def _in_cluster_load(dyn):
    """KubeExec for k6 Jobs next to the deployed service, or a clear error without a cluster."""
    if dyn is None:
        raise TargetError("--in-cluster: no Kubernetes cluster reachable (KUBECONFIG / current context)")
    try:
        secret = secret_name_of(dyn.client)
    except Exception as exc:  # noqa: BLE001 - not deployed, RBAC, ...: all mean "cannot load in-cluster"
        raise TargetError(f"--in-cluster: cannot read deployment/{SERVICE} in {NAMESPACE} ({exc}); "
                          "`make deploy` first") from None
    return KubeExec(dyn.client, NAMESPACE, secret, f"http://{SERVICE}.{NAMESPACE}.svc:{PORT}")


COLLECTOR_SELECTOR, READER = "app.kubernetes.io/name=otel-collector", "reader"


def collector_reader(api_client, namespace: str = NAMESPACE):
    """(run, what to record) for the tracing component's Collector: ``run(argv)`` runs a command
    in its pod's ``reader`` sidecar and returns stdout (the Collector's own image has no shell);
    the pod is looked up at each call, so a restarted Collector is found again. ``run`` is None
    where no Collector pod is Running (the component is not deployed), and the record says why."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)

    def pod() -> str:
        running = [p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=COLLECTOR_SELECTOR).items
                   if p.status.phase == "Running"]
        if len(running) != 1:
            raise RuntimeError(f"{len(running)} Running pods with {COLLECTOR_SELECTOR} in {namespace}, not one")
        return running[0]

    try:
        first = pod()
    except Exception as exc:  # noqa: BLE001 - not deployed, RBAC, ...: the run goes on without server spans
        return None, (f"none: no tracing component's Collector ({exc}); deploy an overlay with "
                      "components/tracing for server spans")
    return (lambda argv: pod_exec(api_client, namespace, pod(), READER, argv),
            f"OpenTelemetry Collector pod {first}: its file exporter's {COLLECTOR_SPANS_FILE}, read through "
            f"container {READER!r}, kept to this run's window and request ids")


@contextlib.contextmanager
def k8s_target(spec: LoadSpec, base_url: str | None, in_cluster: bool = False):
    """Probe and /metrics go through the ingress (BASE_URL) or a port-forward; k6 too, unless
    ``in_cluster``, where it runs as a Job beside the Service. One API client serves the k6
    Jobs, the per-pod scrapes and the span reader (asking for it costs a round trip to the API
    server); the manifest's ``deployment.spans`` says where the run's spans come from, or why none."""
    key = credentials.api_key("k8s")
    dyn = cluster_client()
    load = _in_cluster_load(dyn) if in_cluster else None
    pods = pod_scraper(dyn.client) if dyn is not None else None
    via_load = {"load": f"k6 Job in namespace {NAMESPACE} -> {load.service_url}"} if load else {}
    spans, spans_note = ((None, "off (observe.traces: false)") if not spec.observe.traces else
                         (None, "none: no cluster API reachable") if dyn is None else collector_reader(dyn.client))
    if base_url:
        info = TargetInfo(kind="k8s", base_url=base_url, model=spec.model, served_model_name=spec.model,
                          tls_skip_verify=spec.tls_skip_verify,
                          deployment={"via": "ingress", **via_load, "spans": spans_note})
        logs = (lambda since, until: ingress_access_log(dyn.client, since, until)) if dyn is not None else None
        yield TargetSession("k8s", base_url.rstrip("/"), key, info, verify_tls=not spec.tls_skip_verify,
                            in_cluster=load, pod_scraper=pods, edge_log=logs, span_reader=spans)
        return
    with port_forward() as url:
        info = TargetInfo(kind="k8s", base_url=url, model=spec.model, served_model_name=spec.model,
                          deployment={"via": f"port-forward svc/{SERVICE} -n {NAMESPACE}", **via_load,
                                      "spans": spans_note})
        yield TargetSession("k8s", url, key, info, in_cluster=load, pod_scraper=pods, span_reader=spans)


INGRESS_NAMESPACE = "ingress-nginx"
INGRESS_SELECTOR = "app.kubernetes.io/name=ingress-nginx,app.kubernetes.io/component=controller"
LOG_SLACK_S = 5  # since_seconds is whole seconds and the pod's clock is not ours: ask for a little more


def ingress_access_log(api_client, since: datetime, until: datetime | None = None,
                       namespace: str = INGRESS_NAMESPACE, selector: str = INGRESS_SELECTOR,
                       container: str = "controller") -> str:
    """The ingress-nginx controller's log lines for a run's window, every controller pod's in
    turn (``read_namespaced_pod_log`` with ``since_seconds``), for
    ``read_edge_log(..., source="controller")``. Access lines (JSON, platform/ingress-controller's
    format) whose ``time`` lies outside ``[since - slack, until + slack]`` are dropped; the
    controller's own lines are kept, for the reader to count. Raw text, as the API returns it."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    since_s = max(1, math.ceil((datetime.now(UTC) - since).total_seconds()) + LOG_SLACK_S)
    lo = since - timedelta(seconds=LOG_SLACK_S)
    hi = (until or datetime.now(UTC)) + timedelta(seconds=LOG_SLACK_S)
    out = []
    for pod in sorted(core.list_namespaced_pod(namespace, label_selector=selector).items, key=lambda p: p.metadata.name):
        # raw bytes: client versions that json.loads a str response whatever its content type
        # turn a log of one JSON line into a Python dict's repr
        resp = core.read_namespaced_pod_log(pod.metadata.name, namespace, container=container,
                                            since_seconds=since_s, _preload_content=False)
        text = resp.data.decode("utf-8", errors="replace")
        out += [line for line in text.splitlines() if _in_window(line, lo, hi)]
    return "".join(line + "\n" for line in out)


def _in_window(line: str, lo: datetime, hi: datetime) -> bool:
    if not line.startswith("{"):
        return True
    try:
        t = datetime.fromisoformat(json.loads(line)["time"])
    except (ValueError, KeyError, TypeError):
        return True  # the reader names what is wrong with it
    return lo <= t <= hi
