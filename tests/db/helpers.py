"""Shared helpers of the engine tests: options that make a tiny LSM tree,
the DB directory's file names, byte surgery on files, a lock that tells
when a caller waits for it, and a runner for the child processes the crash
and lock tests need."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import hedge

SOAK = os.environ.get("HEDGE_SOAK") == "1"

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.py")

# One thread per pool, unpinned: the machine has 2 cores shared with other work.
# Compaction merges in-process: a worker process per test database would
# cost a process start each; tests/db/test_compaction_process.py and the
# power-loss kills cover the worker (the default).
LEAN = dict(foreground_threads=1, background_threads=1, pin=False, compaction_process=False, flush_process=False)

# A tree that really has several levels after a few hundred small writes.
SMALL = dict(LEAN, memtable_bytes=4096, table_bytes=16384, level1_bytes=16384,
             level_size_ratio=4, l0_compaction_trigger=2, block_cache_bytes=1 << 20)


class WatchedLock:
    """A lock (a context manager) that sets ``contended`` when a caller
    finds it held and has to wait for it: a test puts it in place of a
    database's lock to know, without sleeping, that a second thread has
    reached it."""

    def __init__(self, contended: threading.Event):
        self._lock = threading.Lock()
        self.contended = contended

    def __enter__(self):
        if not self._lock.acquire(blocking=False):
            self.contended.set()
            self._lock.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()


WAL_NAME = re.compile(r"^(\d{6})\.wal$")
SST_NAME = re.compile(r"^(\d{6})\.sst$")


def open_db(path, io_method: str, **options) -> "hedge.DB":
    """hedge.open with the lean thread options and ``options`` on top."""
    return hedge.open(str(path), create=True, io_method=io_method, **{**LEAN, **options})


def numbered(path, pattern: re.Pattern) -> list[str]:
    """Full paths of the files in ``path`` matching ``pattern``, by number."""
    names = [n for n in os.listdir(path) if pattern.match(n)]
    names.sort(key=lambda n: int(pattern.match(n).group(1)))
    return [os.path.join(path, n) for n in names]


def wal_files(path) -> list[str]:
    return numbered(path, WAL_NAME)


def sst_files(path) -> list[str]:
    return numbered(path, SST_NAME)


def flip_byte(path: str, offset: int) -> None:
    """Invert every bit of the byte at ``offset`` of the file ``path``."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        assert len(b) == 1, f"{path} has no byte at {offset}"
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def wal_record_offsets(path: str) -> list[int]:
    """Start offsets of the intact-looking records of a WAL file, from the
    record framing of docs/format/wal.md (24-byte header, length at 16)."""
    data = open(path, "rb").read()
    offsets = []
    pos = 0
    while pos + 24 <= len(data):
        length = int.from_bytes(data[pos + 16:pos + 20], "little")
        file_number = int.from_bytes(data[pos + 8:pos + 16], "little")
        if file_number == 0 or pos + 24 + length > len(data):
            break
        offsets.append(pos)
        pos += 24 + length
    return offsets


def random_writes(db, rnd, model: dict, count: int, key_space: int, batches: float = 0.0) -> dict:
    """``count`` writes to ``db`` and to its ``model`` (a dict), drawn from
    ``rnd``: a remove (15%), a write batch of one to four puts and removes
    (a ``batches`` share, none by default) or a put of a 10-79 byte value,
    of keys b"key%06d" below ``key_space``.  Returns ``model``."""
    for i in range(count):
        key = b"key%06d" % rnd.randrange(key_space)
        r = rnd.random()
        if r < 0.15:
            db.remove(key)
            model.pop(key, None)
        elif r < 0.15 + batches:
            with db.write_batch() as batch:
                for _ in range(rnd.randint(1, 4)):
                    k = b"key%06d" % rnd.randrange(key_space)
                    if rnd.random() < 0.3:
                        batch.remove(k)
                        model.pop(k, None)
                    else:
                        v = b"b%d-" % i + bytes(rnd.randrange(0, 60))
                        batch.put(k, v)
                        model[k] = v
        else:
            value = b"%d-" % i + bytes(rnd.randrange(10, 80))
            db.put(key, value)
            model[key] = value
    return model


def model_scan(model: dict, start=None, end=None) -> list[tuple[bytes, bytes]]:
    """What a scan of [start, end) over the dict ``model`` returns."""
    return sorted((k, v) for k, v in model.items()
                  if (start is None or k >= start) and (end is None or k < end))


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def start_child(*args: str, stderr=None, env: dict | None = None, new_session: bool = False) -> subprocess.Popen:
    """Start tests/db/child.py with ``args``; stdout is a pipe of lines.
    ``env``: extra environment variables; ``new_session``: the child leads
    a process group of its own (and of the processes it starts)."""
    return subprocess.Popen([sys.executable, CHILD, *args], stdout=subprocess.PIPE,
                            stderr=stderr if stderr is not None else subprocess.PIPE,
                            env={**child_env(), **(env or {})}, cwd=ROOT, start_new_session=new_session)


class ChildRun:
    """One child process and the lines it wrote, read by a thread so the
    child never blocks on a full pipe.

    ``kill_after_acks``: SIGKILL the child (and its process group, which it
    then leads) as soon as this many "A" lines arrived."""

    def __init__(self, *args: str, env: dict | None = None, kill_after_acks: int | None = None):
        self.group = kill_after_acks is not None or env is not None
        self.proc = start_child(*args, env=env, new_session=self.group)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.opening = threading.Event()     # an "O" line: the child is about to open the database
        self._acks = 0
        self._eof = False
        self._acked = threading.Condition()
        self._kill_at = kill_after_acks
        self._tail = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            chunk = out.read1(65536)
            if not chunk:
                break
            data = self._tail + chunk
            *complete, self._tail = data.split(b"\n")
            for line in complete:
                text = line.decode()
                if text == "R":
                    self.ready.set()
                elif text == "O":
                    self.opening.set()
                self.lines.append(text)
                if text.startswith("A "):
                    with self._acked:
                        self._acks += 1
                        self._acked.notify_all()
                    if self._acks == self._kill_at:
                        self._kill_now()
        with self._acked:
            self._eof = True                # no more lines: waiters stop waiting
            self._acked.notify_all()
        # A last line without its newline was cut by the kill: ignored (an
        # announcement cut short means the write had not started; an
        # acknowledgement cut short counts as not received).

    def wait_for_acks(self, n: int, timeout: float) -> bool:
        """Wait until the child has acknowledged ``n`` writes; False when it
        did not within ``timeout`` seconds or its output ended first."""
        with self._acked:
            self._acked.wait_for(lambda: self._acks >= n or self._eof, timeout)
            return self._acks >= n

    def _kill_now(self) -> None:
        try:
            if self.group:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill(self, timeout: float | None = None) -> None:
        """SIGKILL the child unless it is dead already (``timeout``: wait
        that long for it to die by itself first), reap it and check that a
        SIGKILL ended it."""
        if timeout is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self._kill_now()
        elif self.group:
            self._kill_now()        # what the child started may still run
        self.proc.wait()
        self._reader.join()
        err = self.proc.stderr.read().decode()
        self.proc.stderr.close()
        self.proc.stdout.close()
        assert self.proc.returncode == -signal.SIGKILL, (
            f"child ended by itself with {self.proc.returncode} before the kill:\n{err}")


def run_child(*args: str, timeout: float = 60) -> str:
    """Run tests/db/child.py to completion; return its stdout, fail with its
    stderr when it exits non-zero."""
    proc = subprocess.run([sys.executable, CHILD, *args], capture_output=True, env=child_env(),
                          cwd=ROOT, timeout=timeout)
    assert proc.returncode == 0, f"child {args[:1]} failed ({proc.returncode}):\n{proc.stderr.decode()}"
    return proc.stdout.decode()


def level_summary(db) -> list[tuple[int, int]]:
    """(files, bytes) of each level from stats()."""
    return [(lv["files"], lv["bytes"]) for lv in db.stats()["levels"]]


def crash_value(run: int, op_id: int, index: int, pad: int) -> bytes:
    """The value the crash workload writes for operation ``index`` of write
    ``op_id`` of child run ``run``: unique, so a value read back names the
    write it came from."""
    return b"%d.%d.%d." % (run, op_id, index) + b"v" * pad


def wal_end(path: str) -> int:
    """Offset just past the last record of a WAL file (the file may go on
    with zero fill)."""
    offsets = wal_record_offsets(path)
    assert offsets, f"{path} holds no record"
    with open(path, "rb") as f:
        f.seek(offsets[-1] + 16)
        return offsets[-1] + 24 + int.from_bytes(f.read(4), "little")
