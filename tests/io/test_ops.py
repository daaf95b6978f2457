"""Round trips of every operation, error paths, O_DIRECT, and volume tests,
each over every I/O method."""
from __future__ import annotations

import errno
import os
import random
import select

import pytest

from hedge.errors import AlignmentError, ClosedError, HedgeIOError, ShortIOError
from hedge.exec import gather
from hedge.io import ops
from hedge.io.buffer import Buffer
from hedge.io.file import O_DIRECT, File


def test_read_returns_file_bytes(executor, data_file):
    path, data = data_file

    async def main():
        with File.open(path) as f:
            buf = Buffer(8192)
            n = await ops.read(f, buf, 4096)
            return n, bytes(buf.view)

    n, got = executor.run_sync(main())
    assert n == 8192
    assert got == data[4096:4096 + 8192]


def test_read_into_part_of_bytearray(executor, data_file):
    path, data = data_file

    async def main():
        with File.open(path) as f:
            buf = bytearray(100)
            n = await ops.read(f, buf, 1000, length=50, start=25)
            return n, bytes(buf)

    n, got = executor.run_sync(main())
    assert n == 50
    assert got == bytes(25) + data[1000:1050] + bytes(25)


def test_write_then_read_back(executor, tmp_path):
    path = tmp_path / "w.bin"

    async def main():
        with File.open(path, os.O_RDWR | os.O_CREAT) as f:
            n = await ops.write(f, b"hello world", 100)
            await ops.fdatasync(f)
            await ops.fsync(f)
            buf = bytearray(11)
            await ops.read_exact(f, buf, 100)
            return n, bytes(buf)

    n, got = executor.run_sync(main())
    assert (n, got) == (11, b"hello world")
    assert path.read_bytes() == bytes(100) + b"hello world"


def test_readv_and_writev_round_trip(executor, tmp_path):
    path = tmp_path / "v.bin"
    parts = [b"a" * 3, b"bb" * 50, b"c" * 4096]

    async def main():
        with File.open(path, os.O_RDWR | os.O_CREAT) as f:
            n = await ops.writev(f, parts, 10)
            bufs = [bytearray(3), bytearray(100), Buffer(4096)]
            m = await ops.readv(f, bufs, 10)
            return n, m, [bytes(b) for b in bufs]

    n, m, got = executor.run_sync(main())
    assert n == m == 4199
    assert got == parts
    assert path.read_bytes()[10:] == b"".join(parts)


def test_nop_and_sleep(executor):
    import time

    async def main():
        await ops.nop()
        t0 = time.monotonic()
        await ops.sleep(0.05)
        return time.monotonic() - t0

    elapsed = executor.run_sync(main())
    assert 0.045 <= elapsed < 2.0


def test_poll_on_eventfd_wakes_when_written(executor):
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        async def writer():
            await ops.sleep(0.02)
            os.eventfd_write(efd, 7)

        async def main():
            from hedge.exec import spawn

            task = spawn(writer())
            revents = await ops.poll(efd, select.POLLIN)
            await task
            return revents

        revents = executor.run_sync(main())
        assert revents & select.POLLIN
        assert os.eventfd_read(efd) == 7
    finally:
        os.close(efd)


def test_open_rename_unlink_through_the_ring(executor, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"

    async def main():
        f = await ops.open_file(a, os.O_RDWR | os.O_CREAT, 0o600)
        await ops.write(f, b"xyz", 0)
        f.close()
        await ops.rename(a, b)
        exists_after_rename = (a.exists(), b.read_bytes())
        await ops.unlink(b)
        return exists_after_rename

    assert executor.run_sync(main()) == (False, b"xyz")
    assert not b.exists()


def test_open_missing_file_raises_enoent(executor, tmp_path):
    async def main():
        await ops.open_file(tmp_path / "missing")

    with pytest.raises(HedgeIOError) as info:
        executor.run_sync(main())
    assert info.value.errno == errno.ENOENT
    assert info.value.op == "open"
    assert "missing" in str(info.value)


def test_error_completion_carries_errno_and_op(executor, data_file):
    path, _ = data_file

    async def main():
        with File.open(path, os.O_RDONLY) as f:
            await ops.write(f, b"nope", 0)

    with pytest.raises(HedgeIOError) as info:
        executor.run_sync(main())
    assert info.value.errno == errno.EBADF
    assert info.value.op == "write"
    assert info.value.path == path


def test_read_past_eof_is_short_and_read_exact_raises(executor, data_file):
    path, data = data_file

    async def main():
        with File.open(path) as f:
            buf = bytearray(100)
            at_end = await ops.read(f, buf, len(data))
            tail = await ops.read(f, buf, len(data) - 40)
            try:
                await ops.read_exact(f, buf, len(data) - 40)
            except ShortIOError as e:
                return at_end, tail, e.wanted, e.got
            return at_end, tail, None, None

    assert executor.run_sync(main()) == (0, 40, 100, 40)


def test_use_of_closed_file_raises_closed_error(executor, data_file):
    path, _ = data_file
    f = File.open(path)
    f.close()

    async def main():
        await ops.read(f, bytearray(10), 0)

    with pytest.raises(ClosedError):
        executor.run_sync(main())


def test_buffer_range_outside_buffer_is_value_error(executor, data_file):
    path, _ = data_file

    async def main():
        with File.open(path) as f:
            await ops.read(f, bytearray(10), 0, length=20)

    with pytest.raises(ValueError):
        executor.run_sync(main())


def _direct_supported(directory) -> bool:
    probe = os.path.join(directory, "direct.probe")
    try:
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | O_DIRECT)
        os.close(fd)
        return True
    except OSError:
        return False
    finally:
        if os.path.exists(probe):
            os.unlink(probe)


@pytest.fixture
def direct_dir(tmp_path):
    if not O_DIRECT or not _direct_supported(tmp_path):
        pytest.skip(f"the file system of {tmp_path} does not support O_DIRECT")
    return tmp_path


def test_direct_io_aligned_round_trip(executor, direct_dir):
    path = direct_dir / "direct.bin"
    payload = os.urandom(3 * 4096)

    async def main():
        with File.open(path, os.O_RDWR | os.O_CREAT, direct=True) as f:
            out = Buffer(3 * 4096)
            out[:] = payload
            await ops.write(f, out, 8192)
            await ops.fdatasync(f)
            back = Buffer(2 * 4096)
            await ops.read_exact(f, back, 8192 + 4096)
            return bytes(back.view)

    assert executor.run_sync(main()) == payload[4096:]


@pytest.mark.parametrize("case", ["address", "length", "offset", "not_a_buffer"])
def test_misaligned_direct_request_is_a_clear_error(executor, direct_dir, case):
    path = direct_dir / "direct.bin"
    path.write_bytes(bytes(16384))
    before = executor.stats()["io_requests"]

    async def main():
        with File.open(path, os.O_RDWR, direct=True) as f:
            buf = Buffer(8192)
            if case == "address":
                await ops.read(f, buf, 0, length=4096, start=512)
            elif case == "length":
                await ops.read(f, buf, 0, length=1000)
            elif case == "offset":
                await ops.read(f, buf, 100, length=4096)
            else:
                await ops.write(f, b"x" * 4096, 0)

    with pytest.raises(AlignmentError) as info:
        executor.run_sync(main())
    assert "O_DIRECT" in str(info.value)
    assert executor.stats()["io_requests"] == before  # nothing reached the kernel


def test_ten_thousand_random_reads_and_writes_at_64_in_flight(executor, tmp_path):
    """64 tasks each own a region; every write is followed by a read of a
    random block of the task's region, checked byte for byte against a
    model of the file."""
    block = 512
    blocks_per_task = 32
    tasks = 64
    size = block * blocks_per_task * tasks
    path = tmp_path / "vol.bin"
    path.write_bytes(bytes(size))
    model = bytearray(size)
    rng = random.Random(42)
    plans = []
    for t in range(tasks):
        ops_for_task = []
        for _ in range(10_000 // tasks // 2 + 1):
            w = (t * blocks_per_task + rng.randrange(blocks_per_task)) * block
            r = (t * blocks_per_task + rng.randrange(blocks_per_task)) * block
            ops_for_task.append((w, rng.randbytes(block), r))
        plans.append(ops_for_task)

    mismatches = []
    counts = {"io": 0}

    async def worker(f, plan):
        buf = bytearray(block)
        for w, payload, r in plan:
            await ops.write(f, payload, w)
            model[w:w + block] = payload
            await ops.read_exact(f, buf, r)
            counts["io"] += 2
            if buf != model[r:r + block]:
                mismatches.append(r)

    async def main():
        with File.open(path, os.O_RDWR) as f:
            await gather(*(worker(f, plan) for plan in plans))

    executor.run_sync(main())
    assert counts["io"] >= 10_000
    assert mismatches == []
    assert path.read_bytes() == bytes(model)
    stats = executor.stats()
    assert stats["max_in_flight"] == 64
    assert stats["io_errors"] == 0
