"""CPU topology and pinning: which cores the foreground and background pools run on.

The machine is read once (``read_topology``) into plain data: a ``CpuTopology``
is a tuple of ``Core`` records, each with the OS indexes of its processing
units (PUs, the CPUs of ``os.sched_setaffinity``) and its CPU kind.  The
kinds come from hwloc's cpukinds (through ``pyhwloc``): hwloc ranks kinds by
an abstract efficiency value where a HIGHER value means MORE performance, so
the highest-ranked kind is the performance cores (P-cores) and the others the
efficiency cores (E-cores).  hwloc takes that rank from the operating system,
from core types and frequencies, or from the ``forced_efficiency`` of an XML
``<cpukind>`` element; when it cannot rank the kinds every rank is -1.

``plan_layout`` is pure: topology in, ``Layout`` out.  Rules:

- two or more ranked kinds ("hybrid"): foreground on the highest-ranked kind,
  background on all the other cores;
- one kind, or kinds hwloc could not rank ("split"): the cores in OS order, the
  last quarter (at least one core) to the background pool, the rest to the
  foreground pool, so the foreground gets the larger share (2 cores: 1 and 1;
  8 cores: 6 and 2);
- explicit ``foreground_cpus`` / ``background_cpus`` override both ("split");
- one core, ``pin=False``, or no ``os.sched_setaffinity`` ("none"): nothing is
  pinned.

Each thread of a pool gets the WHOLE cpu set of its pool, not one core each.
Python threads take turns holding the GIL, so they rarely run in parallel and
gain little from a private core; a thread tied to one core would wait for that
core when another process (this machine is shared) runs there, while a pool
set lets the kernel move it to any idle core of the right kind.  The pool sets
still keep the foreground off the E-cores and the background off the P-cores,
which is the point of pinning, and a pool may have more threads than cores.

Default thread counts are the number of cores of the pool, capped at
``FOREGROUND_THREADS_CAP`` (4) and ``BACKGROUND_THREADS_CAP`` (2).  One
executor thread keeps tens of requests in flight through its ring, so threads
are not needed for I/O parallelism; extra threads only buy room for a thread
blocked in a syscall, and beyond a few they contend for the GIL.  Background
work (flush, compaction) is CPU-bound Python and gains nothing from more than
two threads under the GIL.  Explicit counts are taken as given.

Invariants: a ``CpuTopology`` has at least one core, no PU in two cores, cores
ordered by their lowest PU; every cpu set of a ``Layout`` is a non-empty subset
of the topology's CPUs.

Threads: ``read_topology`` and ``plan_layout`` may run on any thread.
``pin_current_thread`` changes the affinity of the calling thread only (on
Linux ``sched_setaffinity(0, ...)`` acts on the calling thread, not the
process); executor threads call it first thing on their own thread.  hedge
never pins the main thread, whose affinity is the set of CPUs the process may
use (``process_cpus``).
"""
from __future__ import annotations

import enum
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyhwloc

logger = logging.getLogger("hedge")

# Default cap on foreground threads: they share the GIL (see module docstring).
FOREGROUND_THREADS_CAP = 4
# Default cap on background threads: CPU-bound flush/compaction under the GIL.
BACKGROUND_THREADS_CAP = 2

# The hwloc info attribute naming a kind of core ("IntelCore", "IntelAtom").
_CORE_TYPE_INFO = "CoreType"
_UNKNOWN_KIND = "unknown"


class Mode(enum.StrEnum):
    """How a layout places the pools."""

    HYBRID = "hybrid"  # foreground on P-cores, background on the other kinds
    SPLIT = "split"  # cores divided between the pools (or explicit sets)
    NONE = "none"  # nothing pinned


class Source(enum.StrEnum):
    """Where the knowledge behind a topology or layout came from."""

    HWLOC = "hwloc"  # pyhwloc: cores, PUs and CPU kinds
    AFFINITY = "affinity"  # os.sched_getaffinity: CPUs only, one kind assumed
    NONE = "none"  # no placement decided (pinning switched off)


@dataclass(frozen=True)
class Core:
    """One physical core: its PUs (OS cpu numbers) and its CPU kind."""

    # OS index of the core (hwloc's), or its cpu number when read from affinity.
    os_index: int
    # OS indexes of the core's PUs that this process may use; never empty.
    pus: frozenset[int]
    # hwloc efficiency rank of the core's kind: higher is more performant,
    # -1 when unknown (no kind information, or kinds hwloc could not rank).
    kind_rank: int
    # hwloc "CoreType" of the kind when known ("IntelCore"), else a placeholder.
    kind_name: str


@dataclass(frozen=True)
class CpuTopology:
    """The cores this process may use, as read by ``read_topology``."""

    cores: tuple[Core, ...]
    # Source.HWLOC or Source.AFFINITY.
    source: Source
    # What was read, or why the fallback was used; one phrase for logs.
    detail: str

    def __post_init__(self) -> None:
        if not self.cores:
            raise ValueError("a topology needs at least one core")
        seen: set[int] = set()
        for core in self.cores:
            if not core.pus:
                raise ValueError(f"core {core.os_index} has no PU")
            if seen & core.pus:
                raise ValueError(f"PUs {format_cpus(seen & core.pus)} belong to two cores")
            seen |= core.pus

    @property
    def cpus(self) -> frozenset[int]:
        """Every PU of every core."""
        return frozenset().union(*(core.pus for core in self.cores))

    @property
    def kinds(self) -> int:
        """Number of distinct CPU kinds among the cores."""
        return len({(core.kind_rank, core.kind_name) for core in self.cores})


@dataclass(frozen=True)
class Layout:
    """Where each executor thread runs: one cpu set per thread and pool."""

    # One cpu set per foreground thread (all equal: the pool's set).
    foreground: tuple[frozenset[int], ...]
    # One cpu set per background thread (all equal: the pool's set).
    background: tuple[frozenset[int], ...]
    mode: Mode
    # The topology's source, or Source.NONE when pinning is switched off.
    source: Source
    # Why this layout, in one human sentence without a final period.
    reason: str

    @property
    def pinned(self) -> bool:
        """True when executor threads should call ``pin_current_thread``."""
        return self.mode is not Mode.NONE

    def describe(self) -> str:
        """One line for logs, stats and benchmark headers."""
        fg, bg = len(self.foreground), len(self.background)
        if not self.pinned:
            return (f"none: foreground {_count(fg, 'thread')}, background {_count(bg, 'thread')}, "
                    f"not pinned: {self.reason} ({self.source})")
        fg_name, bg_name = ("P-cores", "E-cores") if self.mode is Mode.HYBRID else ("cores", "cores")
        fg_cpus = frozenset().union(*self.foreground)
        bg_cpus = frozenset().union(*self.background)
        return (f"{self.mode}: foreground {_count(fg, 'thread')} on {fg_name} {{{format_cpus(fg_cpus)}}}, "
                f"background {_count(bg, 'thread')} on {bg_name} {{{format_cpus(bg_cpus)}}} ({self.source})")


def format_cpus(cpus: frozenset[int] | set[int]) -> str:
    """Cpu list in taskset style: {0, 1, 2, 5} -> "0-2,5"."""
    ranges: list[str] = []
    ordered = sorted(cpus)
    start = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
            first, last = ordered[start], ordered[i - 1]
            ranges.append(str(first) if first == last else f"{first}-{last}")
            start = i
    return ",".join(ranges)


def process_cpus() -> frozenset[int]:
    """The CPUs this process may use: the affinity of its main thread.

    hedge never pins the main thread, so its affinity is what the process was
    started with (taskset, cgroup cpuset), whatever the calling thread's is.
    """
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(os.getpid()))
    return frozenset(range(os.cpu_count() or 1))


def read_topology(xml_path: str | os.PathLike[str] | None = None, xml_text: str | None = None,
                  allowed: frozenset[int] | None = None) -> CpuTopology:
    """Read the cores and CPU kinds of this machine, or of an hwloc XML export.

    Without XML: hwloc through pyhwloc, restricted to ``allowed`` (default
    ``process_cpus()``); when pyhwloc cannot be imported or hwloc cannot load
    the machine, falls back to one core per allowed CPU, one kind, and logs
    one line on the "hedge" logger saying why.

    With ``xml_path`` or ``xml_text`` (tests, or a machine described offline):
    restricted to ``allowed`` (default: the CPUs the XML marks allowed), and
    there is no fallback, since the affinity of this machine would describe
    another machine.

    REQUIRES: at most one of xml_path and xml_text.
    Raises ValueError for both XML arguments, an XML hwloc cannot load, or an
    ``allowed`` set that leaves no core; ImportError when XML is given and
    pyhwloc is not importable.
    """
    if xml_path is not None and xml_text is not None:
        raise ValueError("give xml_path or xml_text, not both")
    if xml_path is not None or xml_text is not None:
        import pyhwloc

        where = f"hwloc XML {os.fspath(xml_path)}" if xml_path is not None else "hwloc XML text"
        try:
            # load=True: pyhwloc destroys the handle itself when loading fails;
            # a Topology left unloaded logs a warning on the root logger when
            # it is garbage-collected.
            if xml_path is not None:
                hw = pyhwloc.from_xml_file(xml_path, load=True)
            else:
                hw = pyhwloc.from_xml_buffer(xml_text, load=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ValueError(f"hwloc cannot load {where}: {exc}") from exc
        with hw:
            cpus = allowed if allowed is not None else frozenset(hw.allowed_cpuset)
            cores = _hwloc_cores(hw, cpus)
        if not cores:
            raise ValueError(f"no core of {where} is in the allowed cpus {{{format_cpus(cpus)}}}")
        return CpuTopology(cores, Source.HWLOC, where)

    cpus = allowed if allowed is not None else process_cpus()
    try:
        import pyhwloc
    except (ImportError, OSError, RuntimeError) as exc:
        return _affinity_topology(cpus, f"pyhwloc is not importable ({exc})")
    try:
        hw = pyhwloc.from_this_system(load=True)
    except (OSError, RuntimeError, ValueError) as exc:
        return _affinity_topology(cpus, f"hwloc cannot load this machine ({exc})")
    with hw:
        cores = _hwloc_cores(hw, cpus)
    if not cores:
        return _affinity_topology(cpus, f"hwloc sees none of the allowed cpus {{{format_cpus(cpus)}}}")
    topology = CpuTopology(cores, Source.HWLOC, f"hwloc {pyhwloc.__version__}, this machine")
    logger.info("cpu topology from %s: %s, %s", topology.detail, _count(len(cores), "core"),
                _count(topology.kinds, "kind"))
    return topology


def _hwloc_cores(hw: pyhwloc.Topology, cpus: frozenset[int]) -> tuple[Core, ...]:
    """Cores of a loaded pyhwloc topology, restricted to ``cpus``."""
    kinds = hw.get_cpukinds()
    kind_of_pu: dict[int, tuple[int, str]] = {}
    for index in range(kinds.n_kinds()):
        kind_cpus, efficiency, infos = kinds.get_info(index)
        # Unranked kinds keep distinct names so they still count as distinct.
        name = infos.get(_CORE_TYPE_INFO) or f"kind{index}"
        for pu in kind_cpus:
            kind_of_pu[pu] = (efficiency, name)
    # A topology without Core objects: each PU is its own core.
    objects = list(hw.iter_cores()) or list(hw.iter_cpus())
    cores = []
    for obj in objects:
        pus = frozenset(obj.cpuset) & cpus
        if pus:
            rank, name = max(kind_of_pu.get(pu, (-1, _UNKNOWN_KIND)) for pu in pus)
            cores.append(Core(obj.os_index, pus, rank, name))
    return tuple(sorted(cores, key=lambda core: min(core.pus)))


def _affinity_topology(cpus: frozenset[int], why: str) -> CpuTopology:
    """Fallback: one core per allowed CPU (SMT siblings unknown), one kind."""
    logger.warning("cpu topology from os.sched_getaffinity (%s, one kind assumed): %s",
                   _count(len(cpus), "cpu"), why)
    cores = tuple(Core(cpu, frozenset({cpu}), -1, _UNKNOWN_KIND) for cpu in sorted(cpus))
    return CpuTopology(cores, Source.AFFINITY, why)


def plan_layout(topology: CpuTopology, foreground_threads: int | None = None,
                background_threads: int | None = None, pin: bool = True,
                foreground_cpus: frozenset[int] | None = None,
                background_cpus: frozenset[int] | None = None) -> Layout:
    """Decide the thread counts and cpu sets of both pools (rules: module docstring).

    ``foreground_cpus`` / ``background_cpus`` replace the pools' cpu sets;
    when only one is given the other pool gets the remaining CPUs.  With
    pin=False the default thread counts are those of the pinned layout, every
    set is all of ``topology.cpus`` and the source is Source.NONE.
    REQUIRES: thread counts >= 1 or None; explicit sets non-empty, within
    ``topology.cpus``, and only with pin=True.
    Raises ValueError otherwise, or when one explicit set leaves no CPU for
    the other pool.
    """
    for name, count in (("foreground_threads", foreground_threads),
                        ("background_threads", background_threads)):
        if count is not None and count < 1:
            raise ValueError(f"{name} must be >= 1 or None, not {count}")
    explicit = foreground_cpus is not None or background_cpus is not None
    if explicit and not pin:
        raise ValueError("foreground_cpus/background_cpus pin threads; they need pin=True")

    if explicit:
        fg_cpus, bg_cpus = _explicit_sets(topology, foreground_cpus, background_cpus)
        mode, reason = Mode.SPLIT, "explicit cpu sets"
    else:
        fg_cores, bg_cores, mode, reason = _pools(topology)
        fg_cpus = frozenset().union(*(core.pus for core in fg_cores))
        bg_cpus = frozenset().union(*(core.pus for core in bg_cores))
    fg_count = foreground_threads or min(FOREGROUND_THREADS_CAP, max(1, _cores_in(topology, fg_cpus)))
    bg_count = background_threads or min(BACKGROUND_THREADS_CAP, max(1, _cores_in(topology, bg_cpus)))

    source = topology.source
    if not pin:
        mode, source, reason = Mode.NONE, Source.NONE, "pinning is switched off (pin=False)"
    elif not hasattr(os, "sched_setaffinity"):
        mode, reason = Mode.NONE, "this platform has no os.sched_setaffinity"
    if mode is Mode.NONE:
        fg_cpus = bg_cpus = topology.cpus
    return Layout((fg_cpus,) * fg_count, (bg_cpus,) * bg_count, mode, source, reason)


def _pools(topology: CpuTopology) -> tuple[list[Core], list[Core], Mode, str]:
    """Foreground cores, background cores, mode and reason for a topology."""
    cores = list(topology.cores)
    if len(cores) == 1:
        # Both pools share the one core; counts come out as 1 and 1.
        return cores, cores, Mode.NONE, "one core, nothing to separate"
    ranks = {core.kind_rank for core in cores}
    if len(ranks) >= 2 and min(ranks) >= 0:
        best = max(ranks)
        fg = [core for core in cores if core.kind_rank == best]
        bg = [core for core in cores if core.kind_rank != best]
        return fg, bg, Mode.HYBRID, (
            f"{topology.kinds} CPU kinds ranked by hwloc: foreground on the most performant "
            f"kind ({fg[0].kind_name}), background on the others")
    n_bg = max(1, len(cores) // 4)
    fg, bg = cores[:-n_bg], cores[-n_bg:]
    if topology.kinds >= 2:
        why = f"{topology.kinds} CPU kinds that hwloc could not rank"
    else:
        why = "one kind of core"
    return fg, bg, Mode.SPLIT, f"{why}: {_count(len(fg), 'core')} to the foreground, {len(bg)} to the background"


def _explicit_sets(topology: CpuTopology, foreground_cpus: frozenset[int] | None,
                   background_cpus: frozenset[int] | None) -> tuple[frozenset[int], frozenset[int]]:
    """Validate explicit pool sets; complete a missing one with the remaining CPUs."""
    cpus = topology.cpus
    for name, given in (("foreground_cpus", foreground_cpus), ("background_cpus", background_cpus)):
        if given is None:
            continue
        if not given:
            raise ValueError(f"{name} is empty")
        if not given <= cpus:
            raise ValueError(f"{name} {{{format_cpus(given - cpus)}}} outside the usable cpus {{{format_cpus(cpus)}}}")
    fg = frozenset(foreground_cpus) if foreground_cpus is not None else cpus - background_cpus
    bg = frozenset(background_cpus) if background_cpus is not None else cpus - foreground_cpus
    for name, pool in (("foreground", fg), ("background", bg)):
        if not pool:
            raise ValueError(f"the explicit cpu set leaves no cpu for the {name} pool; give both sets")
    return fg, bg


def _cores_in(topology: CpuTopology, cpus: frozenset[int]) -> int:
    """Number of cores with at least one PU in ``cpus``."""
    return sum(1 for core in topology.cores if core.pus & cpus)


def _count(n: int, noun: str) -> str:
    """"1 thread", "2 threads"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def pin_current_thread(cpus: frozenset[int]) -> frozenset[int]:
    """Pin the calling thread, and only it, to ``cpus``; return the affinity in force.

    REQUIRES: ``cpus`` non-empty and within ``process_cpus()``.
    Raises ValueError otherwise; NotImplementedError where the platform has no
    ``os.sched_setaffinity``; OSError when the kernel refuses the set.
    """
    if not cpus:
        raise ValueError("cannot pin a thread to an empty cpu set")
    allowed = process_cpus()
    outside = frozenset(cpus) - allowed
    if outside:
        raise ValueError(f"cpus {{{format_cpus(outside)}}} are outside the cpus this process may use "
                         f"{{{format_cpus(allowed)}}}")
    if not hasattr(os, "sched_setaffinity"):
        raise NotImplementedError("this platform has no os.sched_setaffinity")
    # pid 0 is the calling thread: Linux affinity is per thread.
    os.sched_setaffinity(0, cpus)
    return frozenset(os.sched_getaffinity(0))
