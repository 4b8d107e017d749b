import os
import subprocess
import sys

import pytest

from inferlab.targets.local import _client_cpus
from inferlab.targets.pinning import Pinning, cpu_list, plan_pinning


def test_cpu_list_uses_ranges():
    assert cpu_list((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    assert cpu_list((3,)) == "3"


def test_split_halves_with_the_odd_core_to_the_engine():
    pin, note = plan_pinning(set(range(16)))
    assert pin == Pinning(engine=tuple(range(8)), client=tuple(range(8, 16)))
    assert "engine on CPUs 0-7, k6 and probe on CPUs 8-15" in note
    pin, _ = plan_pinning({0, 1, 2, 3, 4})
    assert pin.engine == (0, 1, 2) and pin.client == (3, 4)


def test_too_few_cores_is_recorded_not_pinned():
    pin, note = plan_pinning({0, 1})
    assert pin is None and note.startswith("not pinned: 2 usable cores")


def _affinity_of_child(prefix):
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    return subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 usable CPUs")
def test_prefix_and_client_affinity_really_pin():
    cpus = sorted(os.sched_getaffinity(0))
    pin = Pinning(engine=(cpus[0],), client=(cpus[1],))
    assert _affinity_of_child(pin.engine_prefix()) == f"[{cpus[0]}]"  # real taskset
    before = os.sched_getaffinity(0)
    with _client_cpus(pin):
        assert os.sched_getaffinity(0) == {cpus[1]}
        assert _affinity_of_child([]) == f"[{cpus[1]}]"  # k6 inherits it
    assert os.sched_getaffinity(0) == before
