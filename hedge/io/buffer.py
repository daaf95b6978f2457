"""Page-aligned memory for I/O.

A Buffer is an anonymous mmap: its address is page-aligned (4096), as
O_DIRECT requires, and stays fixed for the Buffer's life.  The address is
computed once, so handing it to the ring costs nothing per request.

Any thread may create a Buffer; a Buffer in flight is owned by the request
that uses it until its completion arrives (the executor keeps a reference).
"""
from __future__ import annotations

import ctypes
import mmap

ALIGN = 4096


def round_up(n: int, align: int = ALIGN) -> int:
    return (n + align - 1) & ~(align - 1)


class Buffer:
    """``size`` bytes of page-aligned, zero-filled memory.

    ``view`` is a writable memoryview over it; ``address`` its start address.
    """

    __slots__ = ("_mmap", "view", "address", "size", "__weakref__")

    def __init__(self, size: int):
        if size <= 0:
            raise ValueError(f"buffer size must be > 0, not {size}")
        self.size = size
        self._mmap = mmap.mmap(-1, round_up(size))
        self.view = memoryview(self._mmap)[:size]
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self._mmap))

    def __len__(self) -> int:
        return self.size

    def __buffer__(self, flags: int) -> memoryview:
        return self.view

    def __bytes__(self) -> bytes:
        return bytes(self.view)

    def __getitem__(self, item):
        return self.view[item]

    def __setitem__(self, item, value) -> None:
        self.view[item] = value

    def __repr__(self) -> str:
        return f"Buffer(size={self.size}, address=0x{self.address:x})"
