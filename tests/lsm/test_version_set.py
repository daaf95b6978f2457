"""VersionSet: the manifest side of recovery, file numbers, and
log_and_apply (durable before installed, installs take turns, a failed
append changes nothing)."""
from __future__ import annotations

import errno
import os

import pytest

from hedge.errors import CorruptionError, HedgeIOError
from hedge.exec import gather
from hedge.io import faults
from hedge.lsm import filenames
from hedge.lsm.version_edit import VersionEdit
from hedge.lsm.version_set import VersionSet
from hedge.lsm.wal.reader import WalReader
from tests.lsm.helpers import table


def new_set(executor, directory) -> VersionSet:
    """A version set for a new database in ``directory``, manifest installed."""
    async def make():
        versions = await VersionSet.recover(str(directory), sorted(os.listdir(directory)))
        edit = VersionEdit(wal_number=versions.new_file_number())
        await versions.install_manifest(edit)
        return versions

    return executor.run_sync(make())


def manifest_records(directory, versions: VersionSet) -> int:
    """How many records the manifest file holds on disk now."""
    path = os.path.join(directory, filenames.manifest_name(versions.manifest_number))
    with open(path, "rb") as f:
        return len(WalReader(f.read(), versions.manifest_number, path).read_all())


def test_recover_of_an_empty_directory_is_the_empty_state(executor, tmp_path):
    versions = executor.run_sync(VersionSet.recover(str(tmp_path), []))
    assert versions.current.version.all_file_numbers() == frozenset()
    assert versions.manifest_number is None
    assert versions.new_file_number() == 1


def test_recover_refuses_database_files_without_current(executor, tmp_path):
    (tmp_path / "000003.sst").write_bytes(b"x")
    with pytest.raises(CorruptionError, match="no CURRENT"):
        executor.run_sync(VersionSet.recover(str(tmp_path), sorted(os.listdir(tmp_path))))


def test_recover_reads_back_the_installed_state_and_numbers_pass_every_file(executor, tmp_path):
    versions = new_set(executor, tmp_path)
    versions.last_seq = 41
    executor.run_sync(versions.log_and_apply(_add(versions, 0, table(versions.new_file_number(), "a", "c"))))
    state = versions.current
    versions.close()
    (tmp_path / "000090.sst").write_bytes(b"orphan")
    again = executor.run_sync(VersionSet.recover(str(tmp_path), sorted(os.listdir(tmp_path))))
    assert again.current == state
    assert again.last_seq == 41
    assert again.new_file_number() == 91


def test_log_and_apply_makes_the_edit_durable_before_install_runs(executor, tmp_path):
    versions = new_set(executor, tmp_path)
    seen = []

    def install(state):
        seen.append((manifest_records(tmp_path, versions), state is versions.current))

    executor.run_sync(versions.log_and_apply(_add(versions, 0, table(versions.new_file_number(), "a", "b")),
                                             install))
    assert seen == [(2, True)]           # the snapshot and the edit are on disk


def test_concurrent_log_and_apply_calls_take_turns(executor, tmp_path):
    versions = new_set(executor, tmp_path)
    order = []

    def install_for(name):
        def install(state):
            # Each install sees its own edit as the last one on disk: the
            # other append has not started, or has been installed already.
            order.append((name, manifest_records(tmp_path, versions), len(state.version.levels[0])))
        return install

    first = _add(versions, 0, table(versions.new_file_number(), "a", "b"))
    second = _add(versions, 0, table(versions.new_file_number(), "c", "d"))
    executor.run_sync(gather(versions.log_and_apply(first, install_for("first")),
                             versions.log_and_apply(second, install_for("second"))))
    assert order == [("first", 2, 1), ("second", 3, 2)]


def test_a_failed_manifest_append_changes_nothing(executor, tmp_path):
    versions = new_set(executor, tmp_path)
    before = versions.current
    installed = []
    try:
        with faults.inject("fdatasync", errno.EIO, path_contains="MANIFEST"), \
                faults.inject("fsync", errno.EIO, path_contains="MANIFEST"):
            with pytest.raises(HedgeIOError):
                executor.run_sync(versions.log_and_apply(_add(versions, 0, table(versions.new_file_number(), "a", "b")),
                                                         installed.append))
    finally:
        faults.clear()
    assert versions.current is before and installed == []


def _add(versions: VersionSet, level: int, meta) -> VersionEdit:
    edit = VersionEdit()
    edit.add_file(level, meta)
    return edit
