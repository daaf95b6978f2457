"""The power-loss recorder (hedge/io/powerloss.py): what it records through
every I/O method, and the images it builds from a recording, one rule each."""
from __future__ import annotations

import os
import random

import pytest

from hedge.io import ops, powerloss
from hedge.io.file import File

W = os.O_WRONLY | os.O_CREAT


@pytest.fixture
def recording(tmp_path):
    """A watched directory ``d`` with one durable file ``old`` (baseline), a
    recorder armed in this process; yields (directory, settings)."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "old").write_bytes(b"baseline")
    settings = powerloss.begin(str(tmp_path / "rec.log"), [str(d)])
    powerloss.arm(settings["log"], settings["shadow"], settings["dirs"])
    try:
        yield str(d), settings
    finally:
        powerloss.disarm()


def files(directory) -> dict[str, bytes]:
    out = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            out[name] = f.read()
    return out


def finish(settings) -> powerloss.Recording:
    powerloss.disarm()
    return powerloss.Recording.load(settings["log"])


async def write_file(path: str, data: bytes, sync: bool, flags: int = W) -> None:
    f = await ops.open_file(path, flags)
    try:
        await ops.write(f, data, 0)
        if sync:
            await ops.fdatasync(f)
    finally:
        f.close()


async def sync_dir(directory: str) -> None:
    f = await ops.open_file(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        await ops.fsync(f)
    finally:
        f.close()


def test_the_recorder_is_disarmed_unless_armed():
    assert powerloss.armed is False
    assert os.environ.get(powerloss.ENV) is None


def test_crash_image_is_the_directory_as_it_is(executor, recording, tmp_path):
    d, settings = recording

    async def main():
        await write_file(os.path.join(d, "a"), b"synced", sync=True)
        await write_file(os.path.join(d, "b"), b"unsynced", sync=False)
        await ops.rename(os.path.join(d, "a"), os.path.join(d, "c"))
        await ops.unlink(os.path.join(d, "old"))

    executor.run_sync(main())
    rec = finish(settings)
    image = rec.image(d, str(tmp_path / "img"), "crash", random.Random(1))
    assert files(image.path) == files(d) == {"b": b"unsynced", "c": b"synced"}
    assert image.undone == []


def test_strict_image_without_a_directory_fsync_keeps_only_the_baseline(executor, recording, tmp_path):
    d, settings = recording

    async def main():
        await write_file(os.path.join(d, "a"), b"synced data", sync=True)
        await ops.unlink(os.path.join(d, "old"))

    executor.run_sync(main())
    rec = finish(settings)
    image = rec.image(d, str(tmp_path / "img"), "strict", random.Random(1), keep=0.0)
    # The new name was never made durable; the unlink is undone (the bytes
    # come back from the shadow link).
    assert files(image.path) == {"old": b"baseline"}
    assert [ev[0] for ev in image.undone] == ["create", "unlink"]


def test_directory_fsync_makes_names_durable_and_tails_are_cut(executor, recording, tmp_path):
    d, settings = recording

    async def main():
        f = await ops.open_file(os.path.join(d, "a"), W)
        await ops.write(f, b"0123456789", 0)
        await ops.fdatasync(f)
        await ops.write(f, b"tail", 10)          # never synced
        f.close()
        await write_file(os.path.join(d, "never-synced"), b"xyz", sync=False)
        await sync_dir(d)
        await write_file(os.path.join(d, "late"), b"late", sync=True)   # after the directory fsync

    executor.run_sync(main())
    rec = finish(settings)
    for seed in range(20):
        image = rec.image(d, str(tmp_path / f"img{seed}"), "strict", random.Random(seed), keep=0.0,
                          tails=("cut",))
        assert files(image.path) == {"a": b"0123456789", "never-synced": b"", "old": b"baseline"}


def test_torn_and_zero_filled_tails_keep_the_synced_prefix(executor, recording, tmp_path):
    d, settings = recording

    async def main():
        f = await ops.open_file(os.path.join(d, "a"), W)
        await ops.write(f, b"durable-", 0)
        await ops.fdatasync(f)
        await ops.writev(f, [b"tail-one-", b"tail-two"], 8)
        f.close()
        await sync_dir(d)

    executor.run_sync(main())
    rec = finish(settings)
    seen = set()
    for seed in range(60):
        image = rec.image(d, str(tmp_path / f"img{seed}"), "power", random.Random(seed))
        data = files(image.path)["a"]
        mode = image.tails["a"][0]
        assert data.startswith(b"durable-")
        rest = data[8:]
        if mode == "cut":
            assert rest == b""
        elif mode == "torn":
            assert b"tail-one-tail-two".startswith(rest)
        else:
            assert rest == bytes(len(rest))
        seen.add((mode, 0 < len(rest) < 17))
    assert {("torn", True), ("zero", True), ("cut", False)} <= seen


def test_power_image_keeps_name_operations_in_order(executor, recording, tmp_path):
    d, settings = recording
    names = [f"f{i}" for i in range(8)]

    async def main():
        for name in names:
            await write_file(os.path.join(d, name), name.encode(), sync=False)

    executor.run_sync(main())
    rec = finish(settings)
    lengths = set()
    for seed in range(40):
        image = rec.image(d, str(tmp_path / f"img{seed}"), "power", random.Random(seed))
        present = [n for n in names if n in files(image.path)]
        assert present == names[:len(present)], f"not a prefix: {present}"
        lengths.add(len(present))
    assert len(lengths) > 3          # the cut point varies


def test_strict_image_may_keep_any_subset(executor, recording, tmp_path):
    d, settings = recording
    names = [f"f{i}" for i in range(8)]

    async def main():
        for name in names:
            await write_file(os.path.join(d, name), name.encode(), sync=True)

    executor.run_sync(main())
    rec = finish(settings)
    gaps = 0
    for seed in range(40):
        image = rec.image(d, str(tmp_path / f"img{seed}"), "strict", random.Random(seed))
        present = [n for n in names if n in files(image.path)]
        gaps += present != names[:len(present)]
    assert gaps > 0


def test_undone_rename_over_a_file_brings_the_old_file_back(executor, recording, tmp_path):
    d, settings = recording

    async def main():
        await write_file(os.path.join(d, "new.tmp"), b"new contents", sync=True)
        await ops.rename(os.path.join(d, "new.tmp"), os.path.join(d, "old"))

    executor.run_sync(main())
    rec = finish(settings)
    strict = rec.image(d, str(tmp_path / "strict"), "strict", random.Random(0), keep=0.0)
    assert files(strict.path) == {"old": b"baseline"}
    crash = rec.image(d, str(tmp_path / "crash"), "crash", random.Random(0))
    assert files(crash.path) == {"old": b"new contents"}
    # The rename alone (its source's create undone) still names the new inode.
    kept = set()
    for seed in range(30):
        image = rec.image(d, str(tmp_path / f"img{seed}"), "strict", random.Random(seed))
        kept.add(tuple(sorted(files(image.path).items())))
    assert ((("old", b"new contents"),)) in kept and ((("old", b"baseline"),)) in kept


def test_overwritten_synced_bytes_come_back_until_the_next_sync(executor, recording, tmp_path):
    d, settings = recording
    path = os.path.join(d, "a")

    async def main():
        await write_file(path, b"AAAAAAAA", sync=True)
        await sync_dir(d)
        f = await ops.open_file(path, os.O_WRONLY)
        await ops.write(f, b"BB", 2)             # over synced bytes, not synced
        f.close()

    executor.run_sync(main())
    rec = finish(settings)
    assert rec.count("patch") == 1
    image = rec.image(d, str(tmp_path / "img"), "power", random.Random(0))
    assert files(image.path)["a"] == b"AAAAAAAA"
    crash = rec.image(d, str(tmp_path / "crash"), "crash", random.Random(0))
    assert files(crash.path)["a"] == b"AABBAAAA"


def test_truncating_open_of_a_synced_file_is_undone(executor, recording, tmp_path):
    d, settings = recording

    async def main():
        await write_file(os.path.join(d, "old"), b"xy", sync=False, flags=W | os.O_TRUNC)

    executor.run_sync(main())
    rec = finish(settings)
    image = rec.image(d, str(tmp_path / "img"), "strict", random.Random(0), keep=0.0, tails=("cut",))
    assert files(image.path) == {"old": b"baseline"}


def test_file_open_on_the_calling_thread_is_recorded(recording, tmp_path):
    d, settings = recording
    with File.open(os.path.join(d, "LOCK"), os.O_RDWR | os.O_CREAT):
        pass
    rec = finish(settings)
    assert [ev[2] for ev in rec.events if ev[0] == "create"] == ["LOCK"]


def test_operations_outside_the_watched_directories_are_not_recorded(executor, recording, tmp_path):
    d, settings = recording
    other = tmp_path / "other"
    other.mkdir()

    async def main():
        await write_file(str(other / "x"), b"x", sync=True)
        await sync_dir(str(other))
        await ops.unlink(str(other / "x"))

    executor.run_sync(main())
    rec = finish(settings)
    assert [ev[0] for ev in rec.events] == ["base", "proc"]


def test_a_dir_fsync_issued_before_an_operation_does_not_cover_it(recording, tmp_path):
    d, settings = recording
    rec = finish(settings)
    # Hand-written: the create is logged after the fsync was issued.
    rec.events += [["dbegin", d, "1.1"], ["create", d, "x", 12345], ["dend", "1.1"]]
    _, ops_ = rec.name_ops(d)
    assert ops_ == [(["create", d, "x", 12345], False, False)]
    rec.events += [["dbegin", d, "1.2"], ["dend", "1.2"]]
    _, ops_ = rec.name_ops(d)
    assert ops_ == [(["create", d, "x", 12345], True, True)]


def test_a_file_fsync_commits_earlier_names_on_a_journaling_file_system_only(recording, tmp_path):
    d, settings = recording
    rec = finish(settings)
    rec.events += [["create", d, "x", 1], ["sbegin", "1.1"], ["create", d, "y", 2], ["sync", 3, 0, "1.1"]]
    _, ops_ = rec.name_ops(d)
    assert ops_ == [(["create", d, "x", 1], False, True), (["create", d, "y", 2], False, False)]


def test_power_image_keeps_names_an_fsync_committed(executor, recording, tmp_path):
    d, settings = recording

    async def main():
        await write_file(os.path.join(d, "table"), b"t" * 100, sync=True)
        await write_file(os.path.join(d, "log"), b"record", sync=True)   # commits the journal

    executor.run_sync(main())
    rec = finish(settings)
    for seed in range(20):
        power = rec.image(d, str(tmp_path / f"p{seed}"), "power", random.Random(seed))
        assert files(power.path)["table"] == b"t" * 100
    strict = rec.image(d, str(tmp_path / "strict"), "strict", random.Random(0), keep=0.0)
    assert "table" not in files(strict.path)


def test_kill_point_kills_the_process_at_the_chosen_event(tmp_path):
    """A child armed with a kill point dies right after its second fdatasync
    of a '.wal' file; the recording ends there."""
    import subprocess
    import sys

    d = tmp_path / "d"
    d.mkdir()
    settings = powerloss.begin(str(tmp_path / "rec.log"), [str(d)])
    script = f"""
import os
from hedge.exec import Executor
from hedge.io import ops
async def main():
    for i in range(5):
        f = await ops.open_file({str(d)!r} + f"/{{i}}.wal", os.O_WRONLY | os.O_CREAT)
        await ops.write(f, b"x", 0)
        await ops.fdatasync(f)
        f.close()
        print(i, flush=True)
ex = Executor(io_method="sync").start()
ex.run_sync(main())
"""
    env = dict(os.environ, **powerloss.env(settings, {"op": "sync", "contains": ".wal", "count": 2}))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, start_new_session=True,
                          timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    assert proc.stdout.decode().split() == ["0"]
    rec = powerloss.Recording.load(settings["log"])
    assert rec.kill_point[2:] == ["sync", os.path.join(str(d), "1.wal")]
    assert rec.count("sync") == 2
