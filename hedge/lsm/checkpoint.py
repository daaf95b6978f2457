"""Checkpoints: a consistent copy of a database that opens as a database of
its own (``db.checkpoint(path)``), taken while the source goes on.

What the engine does (Engine.checkpoint) before calling ``write_checkpoint``:
flush (a writable database), so every write acknowledged before the call is
in a table; take a deletion hold (Maintenance.hold_deletions), so no table
of the version it reads next is unlinked by a compaction until the copy is
done; read that version.

What ``write_checkpoint`` writes into the target directory (which must not
exist, or be empty):
  1. every table of the version: a hard link (tables are immutable once
     written), or a copy through the ring when the target is on another
     file system (EXDEV) or the file system has no hard links;
  2. a read-only database's replayed memtable (never flushed in the
     source), as one more L0 table;
  3. a fresh manifest describing exactly that version (its first and only
     record, a snapshot edit) and CURRENT naming it, written as at open
     (ManifestLog.install: manifest fdatasync'ed, CURRENT switched by
     rename, directory fsync'ed), with a WAL number above every file it
     names, so the copy replays no WAL; no WAL is copied.
The target's parent directory is fsync'ed when the target was created.
A failure removes what was made (and the target directory when it was
created) and raises HedgeIOError / HedgeError.

Threads: ``write_checkpoint`` runs on an executor (the caller's); its
hard links are plain link(2) calls on that thread, its copies and syncs go
through the ring.
"""
from __future__ import annotations

import errno
import os

from hedge.errors import HedgeError, HedgeIOError
from hedge.io import ops
from hedge.lsm import filenames
from hedge.lsm.compaction.merge import flush_entries
from hedge.lsm.manifest import ManifestLog, fsync_directory
from hedge.lsm.memtable import Memtable
from hedge.lsm.table_io import write_table
from hedge.lsm.version import Version, VersionSetState
from hedge.lsm.version import apply as apply_edit
from hedge.lsm.version_edit import VersionEdit
from hedge.lsm.version_set import VersionSet
from hedge.options import Options

COPY_CHUNK = 1 << 20
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK)


def prepare_target(target: str) -> bool:
    """Check that ``target`` can take a checkpoint: a missing path (created,
    with its parents) or an empty directory.  Returns whether it was
    created.  Raises HedgeError when it is not empty or not a directory,
    HedgeIOError when it cannot be made."""
    try:
        names = os.listdir(target)
    except FileNotFoundError:
        try:
            os.makedirs(target)
        except OSError as e:
            raise HedgeIOError(e.errno or errno.EIO, "mkdir", target) from None
        return True
    except NotADirectoryError:
        raise HedgeError(f"the checkpoint target {target} exists and is not a directory") from None
    except OSError as e:
        raise HedgeIOError(e.errno or errno.EIO, "listdir", target) from None
    if names:
        raise HedgeError(f"the checkpoint target {target} is not empty ({len(names)} entries)")
    return False


async def write_checkpoint(target: str, version: Version, versions: VersionSet, memtable: Memtable | None,
                           options: Options) -> dict:
    """Write the checkpoint of ``version`` (plus ``memtable`` as an L0 table
    when given and not empty) into ``target`` (see the module docstring).
    REQUIRES: the tables of ``version`` are not unlinked meanwhile (a
    deletion hold).  Returns a summary: tables linked, tables copied,
    the manifest's name."""
    created = prepare_target(target)
    made: list[str] = []
    summary = {"linked": 0, "copied": 0, "manifest": None}
    try:
        for _level, meta in version.files():
            name = filenames.table_name(meta.number)
            src = filenames.join(versions.directory, name)
            dst = filenames.join(target, name)
            made.append(dst)
            if _link(src, dst):
                summary["linked"] += 1
            else:
                await _copy(src, dst)
                summary["copied"] += 1
        last_seq = versions.last_seq
        if memtable is not None and len(memtable):
            number = versions.new_file_number()
            path = filenames.join(target, filenames.table_name(number))
            made.append(path)
            meta, _ = await write_table(path, number, flush_entries(memtable), options.block_bytes,
                                        options.bloom_bits_per_key, options.compression)
            edit = VersionEdit()
            edit.add_file(0, meta)
            version = apply_edit(version, edit)
            last_seq = max(last_seq, memtable.max_seq)
        last_seq = max([last_seq] + [meta.largest_seq for _level, meta in version.files()])
        wal_number = versions.new_file_number()
        manifest_number = versions.new_file_number()
        state = VersionSetState(version, wal_number=wal_number, next_file_number=manifest_number + 1,
                                last_seq=last_seq, compact_pointers=versions.current.compact_pointers)
        made += [filenames.join(target, filenames.manifest_name(manifest_number)),
                 filenames.join(target, filenames.CURRENT_TMP), filenames.join(target, filenames.CURRENT)]
        # Installing fsyncs the target before CURRENT's switch: the tables'
        # names are durable before anything names them.
        manifest = await ManifestLog.install(target, manifest_number, state)
        manifest.close()
        summary["manifest"] = filenames.manifest_name(manifest_number)
        if created:
            await fsync_directory(os.path.dirname(os.path.abspath(target)))
    except BaseException:
        _remove(made, target if created else None)
        raise
    return summary


def _link(src: str, dst: str) -> bool:
    """Hard-link ``src`` to ``dst``; False when the file system cannot (the
    caller copies).  Raises HedgeIOError for any other failure."""
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno in _NO_LINK:
            return False
        raise HedgeIOError(e.errno or errno.EIO, "link", src, f"to {dst}") from None
    return True


async def _copy(src: str, dst: str) -> None:
    """Copy ``src`` to a new file ``dst`` through the ring, fdatasync'ed."""
    source = await ops.open_file(src, os.O_RDONLY)
    try:
        out = await ops.open_file(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            size = source.size()
            buf = bytearray(min(COPY_CHUNK, max(size, 1)))
            offset = 0
            while offset < size:
                n = min(len(buf), size - offset)
                await ops.read_exact(source, buf, offset, n)
                await ops.write(out, memoryview(buf)[:n], offset)
                offset += n
            await ops.fdatasync(out)
        finally:
            out.close()
    finally:
        source.close()


def _remove(paths: list[str], directory: str | None) -> None:
    """Best-effort clean-up after a failed checkpoint."""
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass
    if directory is not None:
        try:
            os.rmdir(directory)
        except OSError:
            pass
