"""targets.k8s.collector_reader: which pod and container the span reader runs its commands in
(the kubernetes client's pod list stands in; ``kube.pod_exec``, the exec call itself, is
recorded instead of run). The reading itself: tests/telemetry/test_collector_spans.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from inferlab.targets import k8s


def pod(name: str, phase: str = "Running") -> SimpleNamespace:
    return SimpleNamespace(metadata=SimpleNamespace(name=name), status=SimpleNamespace(phase=phase))


@pytest.fixture
def cluster(monkeypatch):
    """Pods by label selector (what list_namespaced_pod returns) and the exec calls made."""
    state = SimpleNamespace(pods={}, execs=[], selectors=[])

    class CoreV1Api:
        def __init__(self, api_client) -> None:
            assert api_client == "api"

        def list_namespaced_pod(self, namespace, label_selector):
            state.selectors.append((namespace, label_selector))
            return SimpleNamespace(items=state.pods.get(label_selector, []))

    def pod_exec(api_client, namespace, name, container, command):
        state.execs.append((namespace, name, container, command))
        return b"out"

    monkeypatch.setattr("kubernetes.client.CoreV1Api", CoreV1Api)
    monkeypatch.setattr(k8s, "pod_exec", pod_exec)
    return state


def test_no_collector_means_no_reader_and_says_why(cluster):
    run, note = k8s.collector_reader("api")
    assert run is None and note.startswith("none: no tracing component's Collector (0 Running pods")
    assert "components/tracing" in note
    cluster.pods[k8s.COLLECTOR_SELECTOR] = [pod("otel-collector-a", "Pending")]
    assert k8s.collector_reader("api")[0] is None


def test_reader_execs_in_the_running_collectors_reader_container(cluster):
    cluster.pods[k8s.COLLECTOR_SELECTOR] = [pod("otel-collector-a"), pod("otel-collector-old", "Failed")]
    run, note = k8s.collector_reader("api")
    assert "otel-collector-a" in note and "/var/lib/otelcol/spans.jsonl" in note
    assert run(["stat", "x"]) == b"out"
    cluster.pods[k8s.COLLECTOR_SELECTOR] = [pod("otel-collector-b")]  # restarted: found again
    run(["tail", "y"])
    assert cluster.execs == [("inferlab", "otel-collector-a", "reader", ["stat", "x"]),
                             ("inferlab", "otel-collector-b", "reader", ["tail", "y"])]
    assert {s for s in cluster.selectors} == {("inferlab", "app.kubernetes.io/name=otel-collector")}
    cluster.pods[k8s.COLLECTOR_SELECTOR] = []
    with pytest.raises(RuntimeError, match="0 Running pods"):  # CollectorSpans notes it, the run goes on
        run(["stat", "x"])
