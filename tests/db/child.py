"""Child processes for the crash and lock tests (run as a script).

    child.py hold  PATH IO_METHOD OPTIONS_JSON
        open, put b"held" = b"yes" (sync), print "R", then sleep until killed.
    child.py hold_ro PATH IO_METHOD OPTIONS_JSON
        open with read_only=True, print "V <value of b"held">" then "R",
        then sleep until killed.
    child.py write PATH IO_METHOD OPTIONS_JSON WRITES_JSON
        open, apply the writes in order, print "D", exit without close()
        (as a crash would).  WRITES_JSON: [{"ops": [["p", key, value] |
        ["d", key], ...], "batch": bool, "sync": bool}, ...], keys and values
        latin-1 strings; a non-batch write has exactly one op.  "@FILE"
        instead of the JSON reads it from FILE.
    child.py crash PATH IO_METHOD OPTIONS_JSON RUN SEED
        print "O", open, print "R", then write forever (the line protocol is in
        Workload's docstring; tests/db/test_crash.py reads it) until killed.
    child.py powerloss PATH IO_METHOD OPTIONS_JSON RUN SEED
        open, print "R", then one writer forever (SequentialWorkload's
        docstring; tests/db/test_powerloss.py reads it) until killed.

Every line goes out with one os.write, so a line is never interleaved with
another and is in the pipe before the operation it announces starts.
"""
from __future__ import annotations

import itertools
import json
import os
import random
import signal
import sys

import hedge
from tests.db.helpers import crash_value

WRITERS = 4
WRITER_KEYS = 10
SEQ_KEYS = [b"s%02d" % i for i in range(24)]


def writer_keys(j: int) -> list[bytes]:
    return [b"c%d-%02d" % (j, i) for i in range(WRITER_KEYS)]


def emit(line: str) -> None:
    os.write(1, (line + "\n").encode())


def open_db(path: str, io_method: str, options_json: str):
    return hedge.open(path, create=True, io_method=io_method, **json.loads(options_json))


def hold(path, io_method, options_json) -> None:
    db = open_db(path, io_method, options_json)
    db.put(b"held", b"yes", sync=True)
    emit("R")
    while True:
        signal.pause()      # held open until the parent kills this process


def hold_ro(path, io_method, options_json) -> None:
    db = hedge.open(path, io_method=io_method, read_only=True, **json.loads(options_json))
    value = db.get(b"held")
    emit(f"V {value.decode() if value is not None else '-'}")
    emit("R")
    while True:
        signal.pause()      # held open until the parent kills this process


def write(path, io_method, options_json, writes_json) -> None:
    db = open_db(path, io_method, options_json)
    if writes_json.startswith("@"):
        with open(writes_json[1:]) as f:
            writes_json = f.read()
    for w in json.loads(writes_json):
        ops = w["ops"]
        if w["batch"]:
            b = hedge.WriteBatch()
            for op in ops:
                if op[0] == "p":
                    b.put(op[1].encode("latin-1"), op[2].encode("latin-1"))
                else:
                    b.remove(op[1].encode("latin-1"))
            db.write(b, sync=w["sync"])
        else:
            (op,) = ops
            if op[0] == "p":
                db.put(op[1].encode("latin-1"), op[2].encode("latin-1"), sync=w["sync"])
            else:
                db.remove(op[1].encode("latin-1"), sync=w["sync"])
    emit("D")
    os._exit(0)


class Workload:
    """Random writes; each announced by an "I" line before the call and
    acknowledged by an "A" line after it returned.

    I <op_id> <writer> <json [["p", key, pad] | ["d", key], ...]> <batch 0|1>
    A <op_id>
    """

    def __init__(self, db, run: int, seed: int):
        self.db = db
        self.run = run
        self.rng = random.Random(seed)
        self.next_id = 0

    def plan(self, keys: list[bytes]):
        rng = self.rng
        op_id = self.next_id
        self.next_id += 1
        r = rng.random()
        n = rng.randint(2, 6) if r < 0.3 else 1
        ops = []
        for _ in range(n):
            key = rng.choice(keys)
            if rng.random() < 0.25:
                ops.append(["d", key.decode()])
            else:
                ops.append(["p", key.decode(), rng.choice((0, rng.randint(1, 80), rng.randint(100, 700)))])
        sync = rng.random() < 0.75
        emit(f"I {op_id} {json.dumps(ops, separators=(',', ':'))} {int(n > 1)}")
        return op_id, ops, n > 1, sync

    def value(self, op_id: int, i: int, op) -> bytes:
        return crash_value(self.run, op_id, i, op[2])

    def batch(self, op_id: int, ops) -> hedge.WriteBatch:
        b = hedge.WriteBatch()
        for i, op in enumerate(ops):
            if op[0] == "p":
                b.put(op[1].encode(), self.value(op_id, i, op))
            else:
                b.remove(op[1].encode())
        return b

    def one_sequential(self) -> None:
        op_id, ops, is_batch, sync = self.plan(SEQ_KEYS + [k for j in range(WRITERS) for k in writer_keys(j)])
        if is_batch:
            self.db.write(self.batch(op_id, ops), sync=sync)
        elif ops[0][0] == "p":
            self.db.put(ops[0][1].encode(), self.value(op_id, 0, ops[0]), sync=sync)
        else:
            self.db.remove(ops[0][1].encode(), sync=sync)
        emit(f"A {op_id}")

    async def writer(self, j: int, count: int) -> None:
        aio = self.db.aio
        for _ in range(count):
            op_id, ops, is_batch, sync = self.plan(writer_keys(j))
            if is_batch:
                await aio.write(self.batch(op_id, ops), sync=sync)
            elif ops[0][0] == "p":
                await aio.put(ops[0][1].encode(), self.value(op_id, 0, ops[0]), sync=sync)
            else:
                await aio.remove(ops[0][1].encode(), sync=sync)
            emit(f"A {op_id}")

    def forever(self) -> None:
        while True:
            for _ in range(self.rng.randint(3, 15)):
                self.one_sequential()
            counts = [self.rng.randint(2, 8) for _ in range(WRITERS)]
            self.db.run(hedge.gather(*(self.writer(j, counts[j]) for j in range(WRITERS))))
            if self.rng.random() < 0.1:
                self.db.flush()          # changes no data; a kill may land inside it


class SequentialWorkload:
    """One writer: puts, removes and batches on a few keys, a quarter of
    them sync, with now and then a flush or a close and reopen.  Lines:

    I <op_id> <json [["p", key, pad] | ["d", key], ...]> <sync 0|1>
                    before the write (value: crash_value(run, op_id, i, pad))
    A <op_id>       after it returned
    F               after db.flush() returned (every write before is durable)
    C               after db.close() returned (every write before is durable)
    R               after (re)open
    """

    KEYS = [b"p%02d" % i for i in range(30)]

    def __init__(self, db, reopen, run: int, seed: int):
        self.db = db
        self.reopen = reopen
        self.run = run
        self.rng = random.Random(seed)

    def forever(self) -> None:
        rng = self.rng
        for op_id in itertools.count():
            n = rng.randint(2, 5) if rng.random() < 0.25 else 1
            ops = []
            for _ in range(n):
                key = rng.choice(self.KEYS).decode()
                if rng.random() < 0.2:
                    ops.append(["d", key])
                else:
                    ops.append(["p", key, rng.choice((0, rng.randint(1, 80), rng.randint(100, 700)))])
            sync = rng.random() < 0.25
            emit(f"I {op_id} {json.dumps(ops, separators=(',', ':'))} {int(sync)}")
            if n == 1 and ops[0][0] == "d":
                self.db.remove(ops[0][1].encode(), sync=sync)
            elif n == 1:
                self.db.put(ops[0][1].encode(), crash_value(self.run, op_id, 0, ops[0][2]), sync=sync)
            else:
                b = hedge.WriteBatch()
                for i, op in enumerate(ops):
                    if op[0] == "p":
                        b.put(op[1].encode(), crash_value(self.run, op_id, i, op[2]))
                    else:
                        b.remove(op[1].encode())
                self.db.write(b, sync=sync)
            emit(f"A {op_id}")
            r = rng.random()
            if r < 0.02:
                self.db.flush()
                emit("F")
            elif r < 0.03:
                self.db.close()
                emit("C")
                self.db = self.reopen()
                emit("R")


def powerloss(path, io_method, options_json, run, seed) -> None:
    def reopen():
        return open_db(path, io_method, options_json)

    db = reopen()
    emit("R")
    SequentialWorkload(db, reopen, int(run), int(seed)).forever()


def crash(path, io_method, options_json, run, seed) -> None:
    emit("O")                   # about to open (and recover): a moment to kill at
    db = open_db(path, io_method, options_json)
    emit("R")
    Workload(db, int(run), int(seed)).forever()


if __name__ == "__main__":
    {"hold": hold, "hold_ro": hold_ro, "write": write, "crash": crash, "powerloss": powerloss}[sys.argv[1]](*sys.argv[2:])
