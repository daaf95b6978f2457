"""Awaitable I/O operations, for coroutines running on an executor.

Each operation is one request (or, for short transfers, a few) through the
executor's backend.  A negative result becomes HedgeIOError carrying the
errno, the operation and the path.  Short transfers: ``write``/``writev``
retry the rest until everything is written; ``read`` returns the byte count
(fewer at end of file) and ``read_exact`` retries the rest and raises
ShortIOError at end of file.  Requests on an O_DIRECT file must use a
hedge.io.Buffer and 4096-aligned address, length and offset, or they raise
AlignmentError before anything is submitted.

Two plain functions do their system call on the calling thread instead,
where the page cache makes the ring's round trip cost more than the call:
``write_inline`` (a WAL append) and ``read_now`` (a read the page cache
answers without waiting for the device).

Fault injection (hedge/io/faults.py) and the power-loss recorder
(hedge/io/powerloss.py) hook in here; each costs one bool test when unarmed.

REQUIRES: the awaitable operations are awaited by a coroutine running on a
hedge executor.
"""
from __future__ import annotations

import errno
import os
import select

from hedge.errors import HedgeIOError, ShortIOError
from hedge.io import faults, kernels, powerloss
from hedge.io import opcodes as O
from hedge.io.buffer import ALIGN, Buffer
from hedge.io.file import File, check_direct_alignment
from hedge.io.traps import io_request

ETIME = 62
_ALIGN_MASK = ALIGN - 1


def _nbytes(obj) -> int:
    t = type(obj)
    if t is Buffer or t is bytes or t is bytearray:
        return len(obj)
    return memoryview(obj).nbytes


def _fail(res: int, op: str, file: File | None) -> HedgeIOError:
    return HedgeIOError(-res, op, file.path if file is not None else None)


def _checked_length(file: File, buf, offset: int, start: int, length: int | None, op: str) -> int:
    """Validate a read/write request before anything is submitted; return
    its length.  Raises ClosedError, ValueError, AlignmentError, or an
    injected fault."""
    if file.closed:
        file.check_open()
    is_buffer = type(buf) is Buffer
    total = buf.size if is_buffer else _nbytes(buf)
    if length is None:
        length = total - start
    if start < 0 or length < 0 or start + length > total:
        raise ValueError(f"range [{start}, {start + length}) does not fit a buffer of {total} bytes")
    if file.direct and (not is_buffer or (buf.address + start | length | offset) & _ALIGN_MASK):
        check_direct_alignment(file, buf.address + start if is_buffer else None, length, offset, op)
    if faults.armed:
        faults.check(op, file.path)
    return length


def _checked_vector(file: File, bufs, offset: int, op: str) -> tuple[tuple, list[int]]:
    """Validate a readv/writev request before anything is submitted; return
    the buffers as a tuple and their sizes.  Raises like _checked_length."""
    file.check_open()
    bufs = tuple(bufs)
    sizes = [_nbytes(b) for b in bufs]
    if file.direct:
        pos = offset
        for b, n in zip(bufs, sizes):
            check_direct_alignment(file, b.address if type(b) is Buffer else None, n, pos, op)
            pos += n
    if faults.armed:
        faults.check(op, file.path)
    return bufs, sizes


async def read(file: File, buf, offset: int, length: int | None = None, start: int = 0) -> int:
    """Read up to ``length`` bytes at file ``offset`` into ``buf[start:]``;
    return how many were read (fewer only at end of file)."""
    length = _checked_length(file, buf, offset, start, length, "read")
    res = await io_request(O.READ, file, file.fd, buf, start, length, offset, 0)
    if res < 0:
        raise _fail(res, "read", file)
    return res


async def read_exact(file: File, buf, offset: int, length: int | None = None, start: int = 0) -> None:
    """Read exactly ``length`` bytes; retry short reads; ShortIOError at EOF.
    The first request is issued here, not through ``read`` (one coroutine
    less on every table block read)."""
    length = _checked_length(file, buf, offset, start, length, "read")
    done = await io_request(O.READ, file, file.fd, buf, start, length, offset, 0)
    if done < 0:
        raise _fail(done, "read", file)
    while done < length:
        if file.direct:
            # The kernel returns whole blocks for O_DIRECT; a short one is EOF.
            raise ShortIOError("read", file.path, length, done)
        n = await read(file, buf, offset + done, length - done, start + done)
        if n == 0:
            raise ShortIOError("read", file.path, length, done)
        done += n


_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
SCRATCH_BYTES = 64 * 1024          # the Python read's buffers: a table scan's read-ahead of 16 pages
_scratch: list[memoryview] = []    # those not in use

# The C read (a builtin of hedge.io._uring: preadv2 straight into the bytes
# it returns), or None: not built.
_PREAD_KERNEL = kernels.load_builtin("pread_now")
_pread = _PREAD_KERNEL


def read_kernel_available() -> bool:
    """Whether ``read_now`` can read through the C kernel (hedge/io/kernels.py)."""
    return _PREAD_KERNEL is not None


def use_read_kernel(enabled: bool) -> None:
    """``read_now`` reads through the C kernel (when available) or with
    its Python twin.  For tests and measurements; the default is C when
    available."""
    global _pread
    _pread = _PREAD_KERNEL if enabled else None


def read_now(file: File, offset: int, length: int) -> bytes | None:
    """The ``length`` bytes at ``offset``, read with one preadv2(RWF_NOWAIT)
    on the calling thread when the kernel has them all in the page cache;
    None, having read nothing usable, when it would have to wait for the
    device (EAGAIN), returns fewer bytes, the file is O_DIRECT, or the
    system cannot read without waiting.  Raises HedgeIOError for any other
    error, and injected "read" faults.  Never waits for the device.  Any
    thread.

    The C kernel ``pread_now`` reads straight into the bytes it returns
    (the GIL released around the call); its twin reads into a scratch
    buffer and copies the bytes out.  The scratch buffers are pooled for
    every thread (``list.pop`` and ``append`` are atomic), so there are as
    many as reads ever ran at once; a read longer than one has its own."""
    if file.direct or not _NOWAIT:
        return None
    if file.closed:
        file.check_open()
    if faults.armed:
        faults.check("read", file.path)
    pread = _pread
    if pread is None:
        return _read_now_python(file, offset, length)
    data = pread(file.fd, offset, length, _NOWAIT)
    if type(data) is int:
        return _not_read(data, file)
    return data


def _read_now_python(file: File, offset: int, length: int) -> bytes | None:
    """``read_now``'s read in Python: the twin of ``pread_now``."""
    try:
        view = _scratch.pop()
    except IndexError:
        view = memoryview(bytearray(SCRATCH_BYTES))
    try:
        into = view[:length] if length <= SCRATCH_BYTES else bytearray(length)
        n = os.preadv(file.fd, (into,), offset, _NOWAIT)
        return bytes(into) if n == length else None
    except OSError as e:
        return _not_read(e.errno, file)
    finally:
        _scratch.append(view)


def _not_read(code: int | None, file: File) -> None:
    """A ``read_now`` that failed with errno ``code``: None when the page
    cache lacks the bytes (EAGAIN) or the system cannot read without
    waiting (then ``read_now`` stops trying); raises HedgeIOError for any
    other error."""
    global _NOWAIT
    if code == errno.EAGAIN:
        return None
    if code in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
        _NOWAIT = 0
        return None
    raise HedgeIOError(code or errno.EIO, "read", file.path) from None


async def write(file: File, data, offset: int, start: int = 0, length: int | None = None) -> int:
    """Write ``data[start:start+length]`` at ``offset``, retrying short writes
    until all is written; return the byte count."""
    length = _checked_length(file, data, offset, start, length, "write")
    if powerloss.armed:
        powerloss.before_write(file, offset, length)
    done = 0
    while done < length:
        res = await io_request(O.WRITE, file, file.fd, data, start + done, length - done, offset + done, 0)
        if res < 0:
            raise _fail(res, "write", file)
        if res == 0:
            raise ShortIOError("write", file.path, length, done)
        done += res
    return done


def write_inline(file: File, data, offset: int) -> int:
    """Write all of ``data`` at ``offset`` with blocking pwrite calls on the
    calling thread; return the byte count.  For small appends to a buffered
    (not O_DIRECT) file, which the kernel completes from the page cache:
    io_uring hands a buffered write on ext4 to a kernel worker thread, and a
    130-byte WAL append measured 44 us that way against 1.7 us inline
    (docs/design.md, "Inline WAL appends").  Raises like ``write``."""
    length = _checked_length(file, data, offset, 0, None, "write")
    if powerloss.armed:
        powerloss.before_write(file, offset, length)
    try:
        done = os.pwrite(file.fd, data, offset)
        if done < length:
            view = memoryview(data).cast("B")
            while done < length:
                n = os.pwrite(file.fd, view[done:], offset + done)
                if n == 0:
                    raise ShortIOError("write", file.path, length, done)
                done += n
    except OSError as e:
        if isinstance(e, HedgeIOError):
            raise
        raise HedgeIOError(e.errno or errno.EIO, "write", file.path) from None
    return done


async def readv(file: File, bufs, offset: int) -> int:
    """Scatter-read into ``bufs`` (a sequence of writable buffers) at
    ``offset``; return the total byte count (fewer only at end of file)."""
    bufs, _sizes = _checked_vector(file, bufs, offset, "readv")
    res = await io_request(O.READV, file, file.fd, bufs, 0, len(bufs), offset, 0)
    if res < 0:
        raise _fail(res, "readv", file)
    return res


async def writev(file: File, bufs, offset: int) -> int:
    """Gather-write ``bufs`` at ``offset``; a short write is completed by
    writing the remaining bytes.  Return the total byte count."""
    bufs, sizes = _checked_vector(file, bufs, offset, "writev")
    total = sum(sizes)
    if powerloss.armed:
        powerloss.before_write(file, offset, total)
    res = await io_request(O.WRITEV, file, file.fd, bufs, 0, len(bufs), offset, 0)
    if res < 0:
        raise _fail(res, "writev", file)
    if res < total:
        done = res
        skip = res
        for b, n in zip(bufs, sizes):
            if skip >= n:
                skip -= n
                continue
            await write(file, b, offset + done, skip, n - skip)
            done += n - skip
            skip = 0
    return total


async def _sync(file: File, opcode: int, op: str) -> None:
    file.check_open()
    if faults.armed:
        faults.check(op, file.path)
    note = powerloss.before_sync(file) if powerloss.armed else None
    res = await io_request(opcode, file, file.fd, None, 0, 0, 0, 0)
    if res < 0:
        raise _fail(res, op, file)
    if note is not None:
        powerloss.after_sync(note)


async def fsync(file: File) -> None:
    """Flush data and metadata of ``file`` to stable storage."""
    await _sync(file, O.FSYNC, "fsync")


async def fdatasync(file: File) -> None:
    """Flush the data of ``file`` (and the metadata needed to read it)."""
    await _sync(file, O.FDATASYNC, "fdatasync")


async def nop() -> None:
    """A request that does nothing: a full round trip through the ring."""
    res = await io_request(O.NOP, None, -1, None, 0, 0, 0, 0)
    if res < 0:
        raise _fail(res, "nop", None)


async def sleep(seconds: float) -> None:
    """Suspend the task for ``seconds`` (a timeout request on the ring)."""
    if seconds < 0:
        raise ValueError("sleep time must be >= 0")
    res = await io_request(O.TIMEOUT, None, -1, None, 0, 0, int(seconds * 1e9), 0)
    if res < 0 and res != -ETIME:
        raise _fail(res, "timeout", None)


async def poll(fd: int, mask: int = select.POLLIN) -> int:
    """Wait until ``fd`` is ready for ``mask`` (select.POLL* bits); return
    the ready events."""
    res = await io_request(O.POLL, None, fd, None, 0, mask, 0, 0)
    if res < 0:
        raise HedgeIOError(-res, "poll")
    return res


async def open_file(path: str | os.PathLike, flags: int = os.O_RDONLY, mode: int = 0o644,
                    direct: bool = False) -> File:
    """Open ``path`` through the ring (openat); return a File."""
    path = os.fspath(path)
    if direct:
        from hedge.io.file import O_DIRECT

        flags |= O_DIRECT
    if faults.armed:
        faults.check("open", path)
    note = powerloss.before_open(path, flags) if powerloss.armed else None
    res = await io_request(O.OPENAT, None, O.AT_FDCWD, os.fsencode(path), 0, mode, 0, flags | os.O_CLOEXEC)
    if res < 0:
        raise HedgeIOError(-res, "open", path)
    if note is not None:
        powerloss.after_open(note, res)
    return File(res, path, direct)


async def rename(old: str | os.PathLike, new: str | os.PathLike) -> None:
    """Atomically rename ``old`` to ``new`` (renameat)."""
    old, new = os.fspath(old), os.fspath(new)
    if faults.armed:
        faults.check("rename", old)
    note = powerloss.before_rename(old, new) if powerloss.armed else None
    res = await io_request(O.RENAMEAT, None, O.AT_FDCWD, (os.fsencode(old), os.fsencode(new)), 0, 0, 0, 0)
    if res < 0:
        raise HedgeIOError(-res, "rename", old, f"to {new}")
    if note is not None:
        powerloss.after_rename(note)


async def unlink(path: str | os.PathLike) -> None:
    """Remove the file ``path`` (unlinkat)."""
    path = os.fspath(path)
    if faults.armed:
        faults.check("unlink", path)
    note = powerloss.before_unlink(path) if powerloss.armed else None
    res = await io_request(O.UNLINKAT, None, O.AT_FDCWD, os.fsencode(path), 0, 0, 0, 0)
    if res < 0:
        raise HedgeIOError(-res, "unlink", path)
    if note is not None:
        powerloss.after_unlink(note)
