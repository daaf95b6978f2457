"""CPU topology reading, layout planning and per-thread pinning.

The hybrid path is driven by hand-written hwloc XML (tests/exec/data), so it
is covered on any CPU; the pinning tests run on this machine's real CPUs.
"""
import logging
import os
import re
import sys
import threading
from pathlib import Path

import pytest

from hedge.exec.topology import (
    BACKGROUND_THREADS_CAP,
    FOREGROUND_THREADS_CAP,
    Core,
    CpuTopology,
    Layout,
    Mode,
    Source,
    format_cpus,
    pin_current_thread,
    plan_layout,
    process_cpus,
    read_topology,
)

DATA = Path(__file__).parent / "data"
HYBRID_XML = DATA / "hybrid_4p4e.xml"
UNIFORM_XML = DATA / "uniform_8core.xml"
P_PUS = frozenset(range(0, 8))
E_PUS = frozenset(range(8, 12))


def one_kind(n_cores: int) -> CpuTopology:
    return CpuTopology(tuple(Core(i, frozenset({i}), 0, "kind0") for i in range(n_cores)),
                       Source.HWLOC, f"{n_cores} cores")


def pool_cpus(sets: tuple[frozenset[int], ...]) -> frozenset[int]:
    assert len(set(sets)) == 1, "every thread of a pool gets the pool's whole set"
    return sets[0]


# --- reading hwloc XML -------------------------------------------------------

def test_hybrid_xml_cores_and_kinds():
    t = read_topology(xml_path=HYBRID_XML)
    assert t.source == "hwloc"
    assert [core.pus for core in t.cores] == [frozenset({0, 1}), frozenset({2, 3}), frozenset({4, 5}),
                                              frozenset({6, 7})] + [frozenset({pu}) for pu in range(8, 12)]
    p_cores = [core for core in t.cores if core.pus <= P_PUS]
    e_cores = [core for core in t.cores if core.pus <= E_PUS]
    assert {(core.kind_rank, core.kind_name) for core in p_cores} == {(1, "IntelCore")}
    assert {(core.kind_rank, core.kind_name) for core in e_cores} == {(0, "IntelAtom")}
    assert t.kinds == 2


def test_hybrid_xml_from_text_equals_from_file():
    assert read_topology(xml_text=HYBRID_XML.read_text()).cores == read_topology(xml_path=HYBRID_XML).cores


def test_hwloc_ranks_kinds_from_core_type_without_forced_efficiency():
    text = re.sub(r' forced_efficiency="\d+"', "", HYBRID_XML.read_text())
    assert "forced_efficiency" not in text
    t = read_topology(xml_text=text)
    assert {core.kind_rank for core in t.cores if core.pus <= P_PUS} == {1}
    assert {core.kind_rank for core in t.cores if core.pus <= E_PUS} == {0}


def test_unranked_kinds_are_split_not_hybrid():
    text = re.sub(r'<info name="[^"]*" value="[^"]*"/>', "", HYBRID_XML.read_text())
    text = re.sub(r' forced_efficiency="\d+"', "", text)
    t = read_topology(xml_text=text)
    assert {core.kind_rank for core in t.cores} == {-1}
    assert t.kinds == 2
    layout = plan_layout(t)
    assert layout.mode == "split"
    assert "could not rank" in layout.reason


def test_both_xml_arguments_is_an_error():
    with pytest.raises(ValueError, match="not both"):
        read_topology(xml_path=HYBRID_XML, xml_text=HYBRID_XML.read_text())


def test_unloadable_xml_is_a_value_error():
    with pytest.raises(ValueError, match="hwloc cannot load"):
        read_topology(xml_text="<topology><object type=")


def test_xml_restricted_to_allowed_cpus():
    t = read_topology(xml_path=HYBRID_XML, allowed=frozenset({1, 2, 9}))
    assert [core.pus for core in t.cores] == [frozenset({1}), frozenset({2}), frozenset({9})]
    layout = plan_layout(t)
    assert layout.mode == "hybrid"
    assert pool_cpus(layout.foreground) == {1, 2}
    assert pool_cpus(layout.background) == {9}


def test_allowed_set_missing_every_core_is_an_error():
    with pytest.raises(ValueError, match="no core"):
        read_topology(xml_path=HYBRID_XML, allowed=frozenset({40}))


# --- planning ----------------------------------------------------------------

def test_hybrid_foreground_on_p_cores_background_on_e_cores():
    layout = plan_layout(read_topology(xml_path=HYBRID_XML))
    assert layout.mode == "hybrid" and layout.source == "hwloc" and layout.pinned
    assert pool_cpus(layout.foreground) == P_PUS
    assert pool_cpus(layout.background) == E_PUS
    assert len(layout.foreground) == min(4, FOREGROUND_THREADS_CAP)
    assert len(layout.background) == min(4, BACKGROUND_THREADS_CAP)
    assert layout.describe() == (f"hybrid: foreground {len(layout.foreground)} threads on P-cores {{0-7}}, "
                                 f"background {len(layout.background)} threads on E-cores {{8-11}} (hwloc)")


def test_hybrid_when_only_e_cores_allowed_is_a_split():
    layout = plan_layout(read_topology(xml_path=HYBRID_XML, allowed=E_PUS))
    assert layout.mode == "split"
    assert pool_cpus(layout.foreground) == {8, 9, 10}
    assert pool_cpus(layout.background) == {11}


def test_uniform_eight_cores_split_with_foreground_larger():
    t = read_topology(xml_path=UNIFORM_XML)
    assert len(t.cores) == 8 and t.kinds == 1
    layout = plan_layout(t)
    fg, bg = pool_cpus(layout.foreground), pool_cpus(layout.background)
    assert layout.mode == "split"
    assert fg | bg == frozenset(range(8)) and not fg & bg
    assert len(fg) > len(bg)
    assert fg == frozenset(range(6))


def test_two_cores_split_one_and_one():
    layout = plan_layout(one_kind(2))
    assert layout.mode == "split"
    assert (pool_cpus(layout.foreground), pool_cpus(layout.background)) == ({0}, {1})
    assert (len(layout.foreground), len(layout.background)) == (1, 1)


def test_one_core_is_not_pinned():
    layout = plan_layout(one_kind(1))
    assert layout.mode == "none" and not layout.pinned
    assert layout.source == "hwloc"
    assert layout.foreground == (frozenset({0}),) and layout.background == (frozenset({0}),)
    assert "one core" in layout.describe()


def test_pin_false_is_not_pinned():
    t = read_topology(xml_path=HYBRID_XML)
    layout = plan_layout(t, pin=False)
    assert layout.mode == "none" and layout.source == "none" and not layout.pinned
    assert set(layout.foreground) == set(layout.background) == {t.cpus}
    assert "pin=False" in layout.describe()


def test_explicit_cpu_sets_override_hybrid():
    t = read_topology(xml_path=HYBRID_XML)
    layout = plan_layout(t, foreground_cpus=frozenset({8, 9}), background_cpus=frozenset({0, 1}))
    assert layout.mode == "split" and layout.reason == "explicit cpu sets"
    assert pool_cpus(layout.foreground) == {8, 9}
    assert pool_cpus(layout.background) == {0, 1}
    # {8, 9} are two cores, {0, 1} one core.
    assert (len(layout.foreground), len(layout.background)) == (2, 1)


def test_one_explicit_set_leaves_the_rest_to_the_other_pool():
    t = read_topology(xml_path=UNIFORM_XML)
    layout = plan_layout(t, background_cpus=frozenset({0}))
    assert pool_cpus(layout.background) == {0}
    assert pool_cpus(layout.foreground) == frozenset(range(1, 8))


@pytest.mark.parametrize("kwargs, message", [
    ({"foreground_cpus": frozenset()}, "empty"),
    ({"foreground_cpus": frozenset({0, 99})}, "outside"),
    ({"foreground_cpus": frozenset(range(8))}, "no cpu for the background"),
    ({"foreground_cpus": frozenset({0}), "pin": False}, "pin=True"),
    ({"foreground_threads": 0}, "foreground_threads"),
    ({"background_threads": -1}, "background_threads"),
])
def test_bad_plan_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_layout(one_kind(8), **kwargs)


def test_explicit_thread_counts_are_taken_as_given():
    layout = plan_layout(one_kind(2), foreground_threads=7, background_threads=3)
    assert layout.foreground == (frozenset({0}),) * 7
    assert layout.background == (frozenset({1}),) * 3


def test_layout_is_frozen():
    layout = plan_layout(one_kind(2))
    assert isinstance(layout, Layout)
    with pytest.raises(AttributeError):
        layout.mode = Mode.NONE


def test_topology_rejects_a_pu_in_two_cores():
    with pytest.raises(ValueError, match="two cores"):
        CpuTopology((Core(0, frozenset({0, 1}), 0, "k"), Core(1, frozenset({1}), 0, "k")), Source.HWLOC, "")


@pytest.mark.parametrize("cpus, text", [({0}, "0"), ({0, 1, 2, 5}, "0-2,5"), ({3, 5, 6, 7, 9}, "3,5-7,9")])
def test_format_cpus(cpus, text):
    assert format_cpus(cpus) == text


# --- this machine ------------------------------------------------------------

def test_this_machine_read_with_hwloc_covers_the_process_cpus():
    t = read_topology()
    assert t.source == "hwloc"
    assert t.cpus == process_cpus()


def test_threads_pinned_to_their_layout_sets():
    layout = plan_layout(read_topology())
    before = os.sched_getaffinity(0)
    sets = list(layout.foreground + layout.background)
    seen: dict[int, tuple[frozenset[int], frozenset[int], frozenset[int]]] = {}

    def run(i: int, cpus: frozenset[int]) -> None:
        returned = pin_current_thread(cpus)
        seen[i] = (cpus, returned, frozenset(os.sched_getaffinity(0)))

    threads = [threading.Thread(target=run, args=(i, cpus)) for i, cpus in enumerate(sets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == len(sets)
    for given, returned, in_force in seen.values():
        assert returned == given
        assert in_force == given
    assert os.sched_getaffinity(0) == before


def test_each_thread_keeps_its_own_cpu():
    cpus = sorted(process_cpus())
    barrier = threading.Barrier(len(cpus))
    seen: dict[int, frozenset[int]] = {}

    def run(cpu: int) -> None:
        pin_current_thread(frozenset({cpu}))
        barrier.wait()  # every thread pinned before any reads back
        seen[cpu] = frozenset(os.sched_getaffinity(0))

    threads = [threading.Thread(target=run, args=(cpu,)) for cpu in cpus]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {cpu: frozenset({cpu}) for cpu in cpus}
    assert frozenset(os.sched_getaffinity(0)) == process_cpus()


def test_pin_to_empty_set_is_a_value_error():
    with pytest.raises(ValueError, match="empty"):
        pin_current_thread(frozenset())


def test_pin_outside_process_cpus_is_a_value_error():
    outside = max(process_cpus()) + 1000
    before = os.sched_getaffinity(0)
    with pytest.raises(ValueError, match="outside"):
        pin_current_thread(frozenset({outside}))
    assert os.sched_getaffinity(0) == before


# --- fallback ----------------------------------------------------------------

def test_fallback_when_pyhwloc_is_not_importable(monkeypatch, caplog):
    # A None entry in sys.modules makes `import pyhwloc` raise ImportError.
    monkeypatch.setitem(sys.modules, "pyhwloc", None)
    with caplog.at_level(logging.INFO, logger="hedge"):
        t = read_topology()
    assert t.source == "affinity"
    assert t.cpus == process_cpus()
    assert {core.kind_rank for core in t.cores} == {-1}
    lines = [r.getMessage() for r in caplog.records if r.name == "hedge"]
    assert len(lines) == 1
    assert "os.sched_getaffinity" in lines[0] and "pyhwloc is not importable" in lines[0]
    assert plan_layout(t).source == "affinity"


def test_fallback_when_hwloc_cannot_load_this_machine(monkeypatch, caplog):
    import pyhwloc

    def refuse(load: bool = False):
        raise RuntimeError("simulated hwloc failure")

    monkeypatch.setattr(pyhwloc, "from_this_system", refuse)
    with caplog.at_level(logging.INFO, logger="hedge"):
        t = read_topology()
    assert t.source == "affinity"
    lines = [r.getMessage() for r in caplog.records if r.name == "hedge"]
    assert len(lines) == 1 and "simulated hwloc failure" in lines[0]


def test_hwloc_source_logs_one_line(caplog):
    with caplog.at_level(logging.INFO, logger="hedge"):
        t = read_topology()
    lines = [r.getMessage() for r in caplog.records if r.name == "hedge"]
    assert len(lines) == 1 and "hwloc" in lines[0] and str(len(t.cores)) in lines[0]
