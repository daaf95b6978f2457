"""The compaction worker: a separate process that runs compaction merges
(and, in a second one, flushes), so their pure-Python CPU work has its own
GIL instead of taking the foreground thread's time.

The process is started with fork+exec (``subprocess``, ``python -m
hedge.lsm.compaction``): like multiprocessing's "spawn" it inherits
no thread, ring or lock of the database process, and unlike it never
re-imports the user's ``__main__``.  It pins itself to the background cpu
set it is given, creates its own Executor (same I/O method) and serves jobs
one at a time from a socket pair, through ``multiprocessing.connection``
framing (pickles).

Protocol (parent -> worker, worker -> parent):
  1. parent: ``WorkerConfig`` (once, first);
  2. parent: ``CompactionJob`` — the input tables (numbers; the worker opens
     them), bottommost, oldest_snapshot_seq, max_output_bytes, block/bloom
     options and the output file numbers the parent reserved — or a
     ``FlushJob``: the WAL of an immutable memtable (replayed in the worker,
     with the memtable's entry count and newest seq to check it against),
     block/bloom options and the one output number;
  3. worker, any number of times: ``("more",)`` when it has used every
     reserved number; parent: a tuple of fresh numbers (so it never runs
     out, and never allocates numbers itself);
  4. worker: ``("done", outputs, bytes_written)`` — outputs written and
     fdatasync'ed — or ``("error", exception, traceback_text)``, outputs
     removed (HedgeIOError/CorruptionError cross with their type and fields;
     an exception that cannot be pickled crosses as HedgeError with its
     text);
  5. parent: the next job, or ``None`` to stop.
A worker whose socket closes (it died) fails the job with HedgeError; the
parent then removes every output number it reserved for that job.

Threads: ``CompactionWorker`` is driven from one task at a time (the
maintenance task); ``stop``/``kill`` may be called from any thread once no
job is running.  After os.fork() the child does not touch the parent's
worker (``stop`` only closes its copy of the socket).
"""
from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Callable

from hedge.errors import HedgeError
from hedge.exec import forkguard
from hedge.io import ops
from hedge.lsm.version_edit import FileMeta

STOP_TIMEOUT = 5.0          # seconds a stopping worker gets before it is killed


@dataclass(frozen=True)
class WorkerConfig:
    io_method: str
    ring_entries: int
    submit_min: int
    cpus: frozenset[int] | None


@dataclass(frozen=True)
class CompactionJob:
    directory: str
    inputs: tuple[int, ...]          # table numbers, one merge source each
    direct_io: bool
    bottommost: bool
    oldest_snapshot_seq: int
    max_output_bytes: int
    block_bytes: int
    bloom_bits_per_key: int
    compression: str
    output_numbers: tuple[int, ...]


@dataclass(frozen=True)
class FlushJob:
    """Build the L0 table of one immutable memtable from the WAL that holds
    exactly its writes.  ``entries`` and ``max_seq`` are the memtable's: the
    replay must find the same, or the job fails (the parent then flushes
    the memtable itself)."""
    directory: str
    wal_number: int
    entries: int
    max_seq: int
    block_bytes: int
    bloom_bits_per_key: int
    compression: str
    output_number: int
    oldest_snapshot_seq: int    # versions older than what this sequence number sees are dropped


def reserve_count(input_bytes: int, max_output_bytes: int) -> int:
    """Output numbers to reserve up front: every output but the last holds at
    least ``max_output_bytes`` and a compaction writes no more than it reads
    (plus slack); the worker asks for more if ever needed."""
    return input_bytes // max_output_bytes + 2


class CompactionWorker:
    """The parent's handle on one worker process."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        self._generation = forkguard.generation()
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "hedge.lsm.compaction", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL, close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send(config)
        self._broken = False
        self.busy = False           # a job is running (read by any thread)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def usable(self) -> bool:
        return not self._broken and self._proc.poll() is None

    async def run(self, job: CompactionJob | FlushJob,
                  more: Callable[[int], list[int]]) -> tuple[list[FileMeta], int]:
        """Send ``job``, wait for the answer without blocking the executor
        (the socket is polled through the ring) and return (outputs,
        bytes_written).  ``more(n)`` reserves n more output numbers.  Raises
        the worker's error, or HedgeError when the worker died; on anything
        but an answer (death, cancellation) the worker is killed."""
        conn = self._conn
        answered = False
        self.busy = True
        try:
            self._send(job)
            while True:
                await ops.poll(conn.fileno())
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    raise self._died() from None
                if msg[0] == "more":
                    self._send(tuple(more(4)))
                    continue
                answered = True
                if msg[0] == "done":
                    return msg[1], msg[2]
                error = msg[1]
                error.add_note(f"in the compaction worker (pid {self.pid}):\n{msg[2]}")
                raise error
        except BaseException:
            if not answered:
                self.kill()
            raise
        finally:
            self.busy = False

    def _send(self, obj) -> None:
        try:
            self._conn.send(obj)
        except OSError:
            raise self._died() from None

    def _died(self) -> HedgeError:
        return HedgeError(f"the compaction worker (pid {self.pid}) died: {self._exit_reason()}")

    def _exit_reason(self) -> str:
        try:
            code = self._proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            return "its socket closed while it still runs"
        if code < 0:
            return f"killed by signal {signal.Signals(-code).name}"
        return f"exit code {code}"

    def kill(self) -> None:
        """Kill the process (if it still runs), reap it, close the socket."""
        self._broken = True
        if forkguard.generation() == self._generation:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
        self._conn.close()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Ask the worker to exit; kill it when it has not within ``timeout``
        seconds.  Idempotent; never hangs."""
        if self._conn.closed:
            return
        if forkguard.generation() != self._generation:
            self._conn.close()      # the process belongs to the parent
            return
        if not self._broken:
            try:
                self._conn.send(None)
            except OSError:
                pass
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


# -- the worker process ------------------------------------------------------------

async def _flush_job(job: FlushJob) -> tuple[list[FileMeta], int]:
    """Replay the WAL (any damage refused) and write its writes as the
    table; the same entries in the same order as the memtable's, dropped
    by the same rule, so the same bytes as a flush of the memtable."""
    from hedge.lsm import filenames
    from hedge.lsm.compaction.merge import compact_entries
    from hedge.lsm.recovery import read_wal_entries
    from hedge.lsm.table_io import write_table

    path = filenames.join(job.directory, filenames.wal_name(job.wal_number))
    entries, max_seq = await read_wal_entries(path, job.wal_number)
    if len(entries) != job.entries or max_seq != job.max_seq:
        raise HedgeError(f"{path} holds {len(entries)} writes up to seq {max_seq}, its memtable {job.entries} "
                         f"up to seq {job.max_seq}")
    number = job.output_number
    kept = compact_entries(entries, drop_tombstones=False, oldest_snapshot_seq=job.oldest_snapshot_seq)
    meta, written = await write_table(filenames.join(job.directory, filenames.table_name(number)), number,
                                      kept, job.block_bytes, job.bloom_bits_per_key, job.compression)
    return [meta], written


async def _run_job(job: CompactionJob | FlushJob, conn: Connection) -> tuple[list[FileMeta], int]:
    if type(job) is FlushJob:
        return await _flush_job(job)
    from hedge.lsm import filenames
    from hedge.lsm.compaction.runner import merge_tables
    from hedge.lsm.table_io import open_table

    numbers = list(job.output_numbers)

    async def new_number() -> int:
        if not numbers:
            conn.send(("more",))
            await ops.poll(conn.fileno())
            numbers.extend(conn.recv())
        return numbers.pop(0)

    readers, files = [], []
    try:
        for number in job.inputs:
            reader, file = await open_table(filenames.join(job.directory, filenames.table_name(number)),
                                            number, job.direct_io, None)
            readers.append(reader)
            files.append(file)
        return await merge_tables(readers, directory=job.directory, bottommost=job.bottommost,
                                  oldest_snapshot_seq=job.oldest_snapshot_seq,
                                  max_output_bytes=job.max_output_bytes, block_bytes=job.block_bytes,
                                  bloom_bits_per_key=job.bloom_bits_per_key, compression=job.compression,
                                  new_number=new_number)
    finally:
        for file in files:
            file.close()


def _answer(conn: Connection, answer: tuple) -> None:
    try:
        data = pickle.dumps(answer)
    except Exception:  # noqa: BLE001 - the error's text still crosses
        error = answer[1]
        data = pickle.dumps(("error", HedgeError(f"{type(error).__name__}: {error}"), answer[2]))
    conn.send_bytes(data)


def serve(fd: int) -> None:
    """The worker process's main loop (hedge/lsm/compaction/__main__.py)."""
    from hedge.exec import Executor
    from hedge.exec.topology import pin_current_thread

    # Ctrl-C reaches the whole process group: the database process decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        config: WorkerConfig = conn.recv()
    except EOFError:
        return
    if config.cpus:
        pin_current_thread(config.cpus)
    executor = Executor(io_method=config.io_method, ring_entries=config.ring_entries, name="hedge-compaction",
                        cpus=config.cpus, submit_min=config.submit_min).start()
    try:
        while True:
            try:
                job = conn.recv()
            except EOFError:
                return
            if job is None:
                return
            try:
                outputs, written = executor.run_sync(_run_job(job, conn))
                answer = ("done", outputs, written)
            except BaseException as e:  # noqa: BLE001 - sent to the parent
                answer = ("error", e, traceback.format_exc())
            try:
                _answer(conn, answer)
            except OSError:
                return                  # the parent is gone
    finally:
        executor.close()
        conn.close()
