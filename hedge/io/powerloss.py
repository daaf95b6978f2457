"""The power-loss seam: record what a power loss could take from the
directories hedge writes, and build the images it could leave, for tests.

What survives a power loss (docs/powerloss.md): the data of a file up to its
last completed fsync/fdatasync, and a name (create, rename, unlink) once its
directory was fsync'ed after it.  Everything else is at the mercy of the
page cache: a power loss may keep it, cut it, tear it or zero-fill it, and
POSIX promises no order among the name operations not yet fsync'ed.

Recording.  ``begin(log, directories)`` (in the test) writes the baseline:
every file of the watched directories, taken as durable.  A process armed
from the environment variable HEDGE_POWERLOSS (``env(...)`` makes it; hedge
arms itself at import, so a child process and the compaction worker it
starts both record) appends one line per event to the log, with one
O_APPEND write each, so lines of several threads and processes never
interleave.  Every awaitable operation of hedge/io/ops.py and ``File.open``
calls a hook here (one global bool test when nothing is armed, as
faults.py).  Events, one JSON array per line:

    ["base", dir, {name: [ino, size]}]    the baseline (durable)
    ["proc", pid]                         a process armed itself
    ["create", dir, name, ino]            open(O_CREAT) made a new name
    ["rename", dir, old, new, ino, over]  over: the inode ``new`` named, or null
    ["unlink", dir, name, ino]
    ["patch", ino, offset, shadow]        synced bytes about to be overwritten
    ["sbegin", id] / ["sync", ino, size, id]
                                          fsync/fdatasync of a file issued /
                                          completed (size: when issued)
    ["dbegin", dir, id] / ["dend", id]    fsync of a directory issued / completed
    ["kill", pid, op, path]               the kill point was reached

A name operation is logged after it completed, an fsync when it is issued
and again when it completed; a name operation logged before the "dbegin" of
a completed fsync of its directory is durable (under any model), one logged
before the issue of any completed fsync is durable on a journaling file
system (the power model: an fsync commits the journal).  An inode that
loses its last name (unlink, rename over it) is first hard-linked into the
shadow directory as ``<ino>``, so its bytes stay readable for an image that
undoes the operation.  A kill between an operation and its log line makes the
recording lose that one operation: the image is then one of a process killed
just before it, which is also a possible outcome.

Images.  ``Recording.load(log)`` reads a finished recording (the processes
are dead); ``image(directory, dest, model, rng)`` writes into ``dest`` what
``directory`` could hold after a power loss at the end of the recording:

    crash   every operation kept, every byte written (a process crash)
    power   a journaling file system (ext4, xfs): name operations are
            committed in order, every fsync commits all before it; of the
            rest, those up to a random point are kept; file data beyond the
            file's last fsync is cut, torn or zero-filled
    strict  POSIX only: a name operation is durable once its directory was
            fsync'ed; of the rest a random subset (``keep`` = the
            probability of each; 0: none) is kept; file data as for power

Kill points.  The armed environment may name a kill point: the ``count``-th
completed event ``op`` ("create", "rename", "unlink", "sync", "dsync" or
"any") on a path containing ``contains`` (with ``helper``: only in a
process that does not lead its process group, e.g. the compaction worker);
the process that reaches it SIGKILLs its process group (which the test made
its own), so a crash lands exactly there.

Threads: the hooks run on executor threads of any process; one lock guards
the recorder.  ``begin``/``Recording`` are for the test process.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import threading
from dataclasses import dataclass, field

ENV = "HEDGE_POWERLOSS"
MODELS = ("crash", "power", "strict")
TAILS = ("cut", "torn", "zero")

armed = False
_lock = threading.Lock()
_rec: "_Recorder | None" = None


# -- recording (any process) ----------------------------------------------------------

class _Recorder:
    def __init__(self, log: str, shadow: str, dirs, kill: dict | None):
        self.fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self.shadow = shadow
        self.dirs = frozenset(os.path.abspath(d) for d in dirs)
        self.kill = kill
        self.kill_seen = 0
        self.synced: dict[int, int] = {}        # ino -> size at its last sync known here
        self.serial = 0
        with open(log) as f:
            for line in f:
                ev = json.loads(line)
                if ev[0] == "base":
                    for ino, size in ev[2].values():
                        self.synced[ino] = size
                elif ev[0] == "sync":
                    self.synced[ev[1]] = ev[2]

    def __del__(self):
        os.close(self.fd)

    def write(self, event: list, op: str | None = None, path: str | None = None) -> None:
        with _lock:
            os.write(self.fd, (json.dumps(event) + "\n").encode())
            if op is not None and self.kill is not None:
                self._maybe_kill(op, path)

    def _maybe_kill(self, op: str, path: str | None) -> None:
        kill = self.kill
        if kill["op"] not in ("any", op) or kill.get("helper") and os.getpid() == os.getpgrp():
            return
        if kill.get("contains") and (path is None or kill["contains"] not in path):
            return
        self.kill_seen += 1
        if self.kill_seen < kill["count"]:
            return
        os.write(self.fd, (json.dumps(["kill", os.getpid(), op, path]) + "\n").encode())
        if os.getpgrp() == os.getsid(0):
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    def ident(self) -> str:
        """A name unique across the processes of a recording."""
        with _lock:
            self.serial += 1
            return f"{os.getpid()}.{self.serial}"

    def watched(self, path: str) -> tuple[str, str] | None:
        path = os.path.abspath(path)
        d, name = os.path.split(path)
        return (d, name) if d in self.dirs else None

    def keep_inode(self, path: str, ino: int) -> None:
        """Hard-link ``path`` (inode ``ino``) into the shadow directory."""
        try:
            os.link(path, os.path.join(self.shadow, str(ino)))
        except FileExistsError:
            pass

    def save_synced(self, fd: int, ino: int, offset: int, end: int | None) -> None:
        """Log a patch of the synced bytes of ``ino`` in [offset, end)."""
        synced = self.synced.get(ino, 0)
        end = synced if end is None else min(end, synced)
        if offset >= end:
            return
        src = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(src, end - offset, offset)
        finally:
            os.close(src)
        name = f"patch-{self.ident()}"
        with open(os.path.join(self.shadow, name), "wb") as f:
            f.write(data)
        self.write(["patch", ino, offset, name])


def _arm_from_env() -> None:
    spec = os.environ.get(ENV)
    if spec:
        cfg = json.loads(spec)
        arm(cfg["log"], cfg["shadow"], cfg["dirs"], cfg.get("kill"))


def arm(log: str, shadow: str, dirs, kill: dict | None = None) -> None:
    """Record into ``log`` (made by ``begin``) the operations on files of
    ``dirs``, from now on, in this process."""
    global armed, _rec
    _rec = _Recorder(log, shadow, dirs, kill)
    _rec.write(["proc", os.getpid()])
    armed = True


def disarm() -> None:
    """Stop recording in this process.  A hook already running on another
    thread still finishes its line (the log closes with the last reference)."""
    global armed, _rec
    armed = False
    _rec = None


def begin(log: str, directories) -> dict:
    """Start a recording (test process): write the baseline of
    ``directories`` into a new ``log``, make the shadow directory beside it,
    and return the settings ``env`` and ``arm`` take."""
    shadow = log + ".shadow"
    os.makedirs(shadow, exist_ok=True)
    dirs = [os.path.abspath(d) for d in directories]
    with open(log, "w") as f:
        for d in dirs:
            base = {}
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    st = os.lstat(os.path.join(d, name))
                    if stat.S_ISREG(st.st_mode):
                        base[name] = [st.st_ino, st.st_size]
            f.write(json.dumps(["base", d, base]) + "\n")
    return {"log": log, "shadow": shadow, "dirs": dirs}


def env(settings: dict, kill: dict | None = None) -> dict:
    """Environment variables that arm a child process with ``settings``
    (from ``begin``) and an optional kill point."""
    return {ENV: json.dumps({**settings, "kill": kill})}


# Hooks, called by hedge/io/ops.py and File.open only when ``armed``.  A
# ``before_*`` hook returns a note (None: nothing to record) that the caller
# hands to the matching ``after_*`` hook once the operation succeeded.

def before_open(path: str, flags: int):
    rec = _rec
    if rec is None or not flags & os.O_CREAT:
        return None
    where = rec.watched(path)
    if where is None:
        return None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return where
    if flags & os.O_TRUNC and stat.S_ISREG(st.st_mode):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            rec.save_synced(fd, st.st_ino, 0, None)
        finally:
            os.close(fd)
    return None


def after_open(note, fd: int) -> None:
    rec = _rec
    if rec is not None and note is not None:
        d, name = note
        rec.write(["create", d, name, os.fstat(fd).st_ino], "create", os.path.join(d, name))


def before_write(file, offset: int, length: int) -> None:
    rec = _rec
    if rec is not None and file.path is not None and rec.watched(file.path) is not None:
        ino = os.fstat(file.fd).st_ino
        if offset < rec.synced.get(ino, 0):
            rec.save_synced(file.fd, ino, offset, offset + length)


def before_sync(file):
    rec = _rec
    if rec is None or file.path is None:
        return None
    st = os.fstat(file.fd)
    if stat.S_ISDIR(st.st_mode):
        d = os.path.abspath(file.path)
        if d not in rec.dirs:
            return None
        ident = rec.ident()
        rec.write(["dbegin", d, ident])
        return ("dir", ident, d)
    if rec.watched(file.path) is None:
        return None
    ident = rec.ident()
    rec.write(["sbegin", ident])
    return ("file", st.st_ino, st.st_size, file.path, ident)


def after_sync(note) -> None:
    rec = _rec
    if rec is None or note is None:
        return
    if note[0] == "dir":
        rec.write(["dend", note[1]], "dsync", note[2])
    else:
        _, ino, size, path, ident = note
        rec.synced[ino] = size
        rec.write(["sync", ino, size, ident], "sync", path)


def before_rename(old: str, new: str):
    rec = _rec
    if rec is None:
        return None
    a, b = rec.watched(old), rec.watched(new)
    if a is None and b is None:
        return None
    ino = os.lstat(old).st_ino
    try:
        over = os.lstat(new).st_ino
        rec.keep_inode(new, over)
    except FileNotFoundError:
        over = None
    d = (a or b)[0]
    return (d, os.path.abspath(old), os.path.abspath(new), ino, over)


def after_rename(note) -> None:
    rec = _rec
    if rec is not None and note is not None:
        d, old, new, ino, over = note
        if os.path.dirname(old) != d or os.path.dirname(new) != d:
            raise NotImplementedError("the power-loss recorder models renames within one directory")
        rec.write(["rename", d, os.path.basename(old), os.path.basename(new), ino, over], "rename", new)


def before_unlink(path: str):
    rec = _rec
    if rec is None:
        return None
    where = rec.watched(path)
    if where is None:
        return None
    try:
        ino = os.lstat(path).st_ino
    except FileNotFoundError:
        return None
    rec.keep_inode(path, ino)
    return where + (ino,)


def after_unlink(note) -> None:
    rec = _rec
    if rec is not None and note is not None:
        d, name, ino = note
        rec.write(["unlink", d, name, ino], "unlink", os.path.join(d, name))


# -- images (test process, after every recording process died) -------------------------

@dataclass
class Image:
    """What ``Recording.image`` wrote: the directory and what it undid."""
    path: str
    model: str
    undone: list = field(default_factory=list)       # name operations not kept
    tails: dict = field(default_factory=dict)        # name -> (mode, kept bytes, bytes written)

    def describe(self) -> str:
        ops = ", ".join(f"{ev[0]} {ev[2]}" + (f"->{ev[3]}" if ev[0] == "rename" else "") for ev in self.undone)
        tails = ", ".join(f"{name}: {mode} {kept}/{size}" for name, (mode, kept, size) in sorted(self.tails.items())
                          if kept != size)
        return f"{self.model} image: undone [{ops}]; tails [{tails}]"


class Recording:
    """A finished recording: the log's events and its shadow directory."""

    def __init__(self, events: list, shadow: str):
        self.events = events
        self.shadow = shadow

    @classmethod
    def load(cls, log: str) -> "Recording":
        events = []
        with open(log, "rb") as f:
            for line in f:
                if line.endswith(b"\n"):        # a line cut by the kill never happened
                    events.append(json.loads(line))
        return cls(events, log + ".shadow")

    @property
    def pids(self) -> list[int]:
        return [ev[1] for ev in self.events if ev[0] == "proc"]

    @property
    def kill_point(self) -> list | None:
        for ev in self.events:
            if ev[0] == "kill":
                return ev
        return None

    def count(self, kind: str) -> int:
        return sum(1 for ev in self.events if ev[0] == kind)

    def name_ops(self, directory: str) -> tuple[dict, list[tuple[list, bool, bool]]]:
        """The baseline of ``directory`` (name -> ino) and its name operations
        in order, each with whether it is durable under POSIX (a completed
        fsync of the directory) and on a journaling file system (any
        completed fsync issued after it)."""
        directory = os.path.abspath(directory)
        base: dict[str, int] = {}
        begun: dict[str, tuple[int, str | None]] = {}
        posix_upto = journal_upto = 0
        ops: list[tuple[int, list]] = []
        for i, ev in enumerate(self.events):
            kind = ev[0]
            if kind == "base" and ev[1] == directory:
                base = {name: v[0] for name, v in ev[2].items()}
            elif kind in ("create", "rename", "unlink") and ev[1] == directory:
                ops.append((i, ev))
            elif kind == "dbegin":
                begun[ev[2]] = (i, ev[1])
            elif kind == "sbegin":
                begun[ev[1]] = (i, None)
            elif kind in ("dend", "sync"):
                start, d = begun.get(ev[1] if kind == "dend" else ev[3], (0, None))
                journal_upto = max(journal_upto, start)
                if d == directory:
                    posix_upto = max(posix_upto, start)
        return base, [(ev, i < posix_upto, i < journal_upto) for i, ev in ops]

    def _data(self) -> tuple[dict, dict]:
        """ino -> synced size, ino -> patches since that sync (oldest first)."""
        synced: dict[int, int] = {}
        patches: dict[int, list] = {}
        for ev in self.events:
            if ev[0] == "base":
                for ino, size in ev[2].values():
                    synced[ino] = size
            elif ev[0] == "sync":
                synced[ev[1]] = ev[2]
                patches.pop(ev[1], None)
            elif ev[0] == "patch":
                patches.setdefault(ev[1], []).append((ev[2], ev[3]))
        return synced, patches

    def image(self, directory: str, dest: str, model: str, rng, keep: float = 0.5,
              tails: tuple[str, ...] = TAILS) -> Image:
        """Write into the new directory ``dest`` what ``directory`` could
        hold after a power loss (``model``: crash, power or strict; see the
        module docstring) and return what was undone.  ``rng``: a
        random.Random choosing the cut point, the subset and the tails."""
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, not {model!r}")
        directory = os.path.abspath(directory)
        base, ops = self.name_ops(directory)
        pending = [ev for ev, posix, journal in ops if not (posix or model == "power" and journal)]
        if model == "crash":
            kept_pending = len(pending)
        else:
            kept_pending = rng.randint(0, len(pending))
        image = Image(dest, model)
        names = dict(base)
        rank = 0
        for ev, posix, journal in ops:
            if not (posix or model == "power" and journal):
                if model == "strict":
                    keep_it = rng.random() < keep
                else:
                    keep_it = rank < kept_pending
                rank += 1
                if not keep_it:
                    image.undone.append(ev)
                    continue
            kind = ev[0]
            if kind == "create":
                names[ev[2]] = ev[3]
            elif kind == "rename":
                _, _, old, new, ino, _over = ev
                if names.get(old) == ino:
                    del names[old]
                names[new] = ino
            elif names.get(ev[2]) == ev[3]:      # unlink
                del names[ev[2]]
        where = self._inode_paths(directory)
        synced, patches = self._data()
        os.makedirs(dest)
        for name, ino in sorted(names.items()):
            src = where.get(ino)
            if src is None:
                raise RuntimeError(f"the recording lost inode {ino} ({name}): neither in {directory} "
                                   f"nor in {self.shadow}")
            with open(src, "rb") as f:
                data = bytearray(f.read())
            size = len(data)
            if model != "crash":
                for offset, shadow_name in reversed(patches.get(ino, ())):
                    with open(os.path.join(self.shadow, shadow_name), "rb") as f:
                        old = f.read()
                    if len(data) < offset + len(old):
                        data.extend(bytes(offset + len(old) - len(data)))
                    data[offset:offset + len(old)] = old
                durable = synced.get(ino, 0)
                tail = bytes(data[durable:])
                del data[durable:]
                if len(data) < durable:
                    data.extend(bytes(durable - len(data)))
                mode = rng.choice(tails)
                extra = rng.randint(0, len(tail)) if tail and mode != "cut" else 0
                data += tail[:extra] if mode == "torn" else bytes(extra)
                image.tails[name] = (mode, len(data), size)
            with open(os.path.join(dest, name), "wb") as f:
                f.write(data)
        return image

    def _inode_paths(self, directory: str) -> dict[int, str]:
        where = {}
        for d in (self.shadow, directory):
            if os.path.isdir(d):
                for name in os.listdir(d):
                    path = os.path.join(d, name)
                    st = os.lstat(path)
                    if stat.S_ISREG(st.st_mode):
                        where.setdefault(st.st_ino, path)
        return where


_arm_from_env()
