"""read_wal_entries (hedge/lsm/recovery.py), the flush worker's replay: a
WAL's writes in entry order, exactly what a memtable replayed from the
same WAL yields, and any damage refused."""
from __future__ import annotations

import os
import random

import pytest

from hedge.errors import CorruptionError
from hedge.lsm.batch import WriteBatch
from hedge.lsm.memtable import Memtable
from hedge.lsm.recovery import read_wal_entries, replay_wal
from hedge.lsm.wal.writer import WalWriter

WAL = 7


def write_wal(executor, path: str, rng: random.Random, groups: int) -> int:
    """Group-committed records of batches (puts, overwrites, removes,
    several operations per batch); returns the last sequence number."""
    async def run() -> int:
        wal = await WalWriter.create(path, WAL)
        seq = 1
        try:
            for _ in range(groups):
                payload = []
                for _ in range(rng.randint(1, 6)):
                    batch = WriteBatch()
                    for _ in range(rng.randint(1, 4)):
                        key = b"k%03d" % rng.randrange(60)
                        if rng.random() < 0.2:
                            batch.remove(key)
                        else:
                            batch.put(key, os.urandom(rng.randrange(0, 40)))
                    payload.append(batch.encode(seq))
                    seq += len(batch)
                wal.append(b"".join(payload))
        finally:
            wal.close()
        return seq - 1

    return executor.run_sync(run())


def test_the_entries_are_the_replayed_memtables(executor, tmp_path):
    path = str(tmp_path / "000007.wal")
    last = write_wal(executor, path, random.Random(4), 80)
    mem = Memtable()
    replayed_last, _reader = executor.run_sync(replay_wal(path, WAL, "absolute", mem))
    entries, newest = executor.run_sync(read_wal_entries(path, WAL))
    assert newest == replayed_last == last
    assert entries == list(mem.entries())
    assert len(entries) == last
    assert len({e[0] for e in entries}) < len(entries)      # keys with several versions were met


def test_an_empty_wal_has_no_entries(executor, tmp_path):
    path = str(tmp_path / "000007.wal")
    write_wal(executor, path, random.Random(1), 0)
    assert executor.run_sync(read_wal_entries(path, WAL)) == ([], 0)


@pytest.mark.parametrize("cut", [False, True])
def test_damage_is_refused(executor, tmp_path, cut):
    """A flipped byte in a record, or a torn final record (which recovery
    in its default mode would drop): the worker's WAL must be whole."""
    path = str(tmp_path / "000007.wal")
    write_wal(executor, path, random.Random(2), 10)
    data = bytearray(open(path, "rb").read())
    if cut:
        del data[-5:]
    else:
        data[len(data) // 2] ^= 0x40
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(CorruptionError):
        executor.run_sync(read_wal_entries(path, WAL))
