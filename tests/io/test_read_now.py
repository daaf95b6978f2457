"""ops.read_now: a read the page cache answers on the calling thread, never
waiting for the device, as bytes; every other case says None (the caller
then reads through the ring) or raises the typed error a ring read would.
Each test runs with the C read (``pread_now``) and with its Python twin."""
from __future__ import annotations

import ctypes
import errno
import mmap
import os

import pytest

from hedge.errors import ClosedError, HedgeIOError
from hedge.io import faults, ops
from hedge.io.file import File


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def _resident(fd: int, offset: int, length: int) -> bool:
    """Whether any page of ``[offset, offset + length)`` is in the page
    cache, asked with mincore(2): unlike a probing read, the question
    starts no read-ahead that could bring the pages back."""
    size = offset + length
    addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    try:
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = ctypes.create_string_buffer(pages)
        if _libc.mincore(addr, size, vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        first = offset // mmap.PAGESIZE
        return any(b & 1 for b in vec.raw[first:pages])
    finally:
        _libc.munmap(addr, size)


def _evicted(path: str, offset: int, length: int) -> bool:
    """Drop ``path``'s pages from the page cache; whether those of
    ``[offset, offset + length)`` are now gone (tmpfs, for one, keeps
    them).  Nothing here reads the file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return not _resident(fd, offset, length)
    finally:
        os.close(fd)


@pytest.fixture(autouse=True)
def read_path(read_kernel) -> str:
    """Every test here runs with the C read and with its Python twin
    (tests/conftest.py, ``read_kernel``)."""
    return read_kernel


def _fail_reads(monkeypatch, read_path: str, code: int) -> list:
    """Make every read of ``read_path`` fail with errno ``code``; the list
    of the reads tried."""
    calls = []
    if read_path == "c":
        def refuse(*args):
            calls.append(args)
            return code                             # how pread_now reports an errno
        monkeypatch.setattr(ops, "_pread", refuse)
    else:
        def refuse(*args):
            calls.append(args)
            raise OSError(code, os.strerror(code))
        monkeypatch.setattr(ops.os, "preadv", refuse)
    return calls


def test_resident_sees_what_a_read_brings_into_the_page_cache(data_file):
    path, _ = data_file
    if not _evicted(path, 65536, 4096):
        pytest.skip("this file system keeps the file's pages whatever is asked")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert not _resident(fd, 65536, 4096)
        os.pread(fd, 4096, 65536)
        assert _resident(fd, 65536, 4096)
    finally:
        os.close(fd)


def test_cached_bytes_are_read_in_place(data_file):
    path, data = data_file
    with File.open(path) as f:
        assert ops.read_now(f, 4096, 8192) == data[4096:4096 + 8192]


def test_bytes_the_page_cache_lacks_are_not_waited_for(data_file):
    path, data = data_file
    if not _evicted(path, 65536, 4096):
        pytest.skip("this file system keeps the file's pages whatever is asked")
    with File.open(path) as f:
        assert ops.read_now(f, 65536, 4096) is None
        os.pread(f.fd, 4096, 65536)                 # now cached
        assert ops.read_now(f, 65536, 4096) == data[65536:65536 + 4096]


def test_a_read_past_the_end_is_left_to_the_ring(data_file):
    path, data = data_file
    with File.open(path) as f:
        assert ops.read_now(f, len(data) - 4096, 8192) is None


def test_an_o_direct_file_is_never_read_in_place(data_file, monkeypatch, read_path):
    path, _ = data_file
    calls = _fail_reads(monkeypatch, read_path, errno.EIO)
    with File.open(path) as f:
        f.direct = True                             # as opened with direct=True
        assert ops.read_now(f, 0, 4096) is None
    assert calls == []


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EINVAL])
def test_a_system_without_nowait_reads_turns_them_off(data_file, monkeypatch, code, read_path):
    path, _ = data_file
    monkeypatch.setattr(ops, "_NOWAIT", ops._NOWAIT)    # restored after the test
    calls = _fail_reads(monkeypatch, read_path, code)
    with File.open(path) as f:
        assert ops.read_now(f, 0, 4096) is None
        assert ops.read_now(f, 0, 4096) is None
    assert len(calls) == 1                          # asked once, then never again


def test_an_io_error_is_a_typed_error(data_file, monkeypatch, read_path):
    path, _ = data_file
    _fail_reads(monkeypatch, read_path, errno.EIO)
    with File.open(path) as f:
        with pytest.raises(HedgeIOError) as raised:
            ops.read_now(f, 0, 4096)
    assert raised.value.errno == errno.EIO and raised.value.op == "read"
    assert raised.value.path == path


def test_the_c_read_reports_a_real_errno(data_file, read_path):
    """pread_now itself: the errno of a failed preadv2 (here EBADF, a file
    descriptor closed behind the file's back) becomes a HedgeIOError."""
    if read_path != "c":
        pytest.skip("the C read's own errno")
    path, _ = data_file
    f = File.open(path)
    try:
        os.close(f.fd)
        with pytest.raises(HedgeIOError) as raised:
            ops.read_now(f, 0, 4096)
        assert raised.value.errno == errno.EBADF
    finally:
        f.fd = os.open(path, os.O_RDONLY)           # so that closing the file closes a descriptor it owns
        f.close()


def test_an_injected_read_fault_fails_it_like_a_ring_read(data_file):
    path, _ = data_file
    with File.open(path) as f:
        with faults.inject("read", errno.EIO, path_contains="data.bin", times=1):
            with pytest.raises(HedgeIOError) as raised:
                ops.read_now(f, 0, 4096)
        assert raised.value.errno == errno.EIO
        assert ops.read_now(f, 0, 4096) is not None


def test_a_closed_file_is_refused(data_file):
    path, _ = data_file
    f = File.open(path)
    f.close()
    with pytest.raises(ClosedError):
        ops.read_now(f, 0, 4096)


def test_a_read_longer_than_a_scratch_buffer_is_read_whole(data_file):
    path, data = data_file
    length = ops.SCRATCH_BYTES + 8192
    with File.open(path) as f:
        assert ops.read_now(f, 4096, length) == data[4096:4096 + length]


def test_the_bytes_read_do_not_change_with_the_next_read(data_file):
    path, data = data_file
    with File.open(path) as f:
        first = ops.read_now(f, 0, 8192)
        second = ops.read_now(f, 65536, 8192)
    assert first == data[:8192] and second == data[65536:65536 + 8192]


def test_a_read_made_while_another_is_running_has_a_buffer_of_its_own(data_file, monkeypatch, read_path):
    """As a signal handler's read, or another thread's while one waits in
    its system call: the two reads must not share a scratch buffer (the
    Python twin's; the C read has none)."""
    if read_path != "python":
        pytest.skip("the Python twin's scratch buffers")
    path, data = data_file
    preadv = os.preadv
    nested = []

    def preadv_then_a_read(fd, buffers, offset, flags):
        n = preadv(fd, buffers, offset, flags)
        if not nested:                          # the other read, before this one's bytes are copied out
            nested.append(None)
            nested[0] = ops.read_now(f, 131072, 8192)
        return n

    monkeypatch.setattr(ops.os, "preadv", preadv_then_a_read)
    with File.open(path) as f:
        outer = ops.read_now(f, 0, 8192)
    assert nested == [data[131072:131072 + 8192]]
    assert outer == data[:8192]
