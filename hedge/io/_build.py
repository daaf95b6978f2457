"""cffi (API mode) build of hedge.io._uring: the only C in the project.

It binds the system liburing (Debian/Ubuntu package liburing-dev, >= 2.3),
linked statically when its archive allows, else shared (see _build_probe.py), and
adds one helper, ``hedge_enter``, that does a whole executor-loop step in one
call: prepare a staged batch of requests as SQEs, submit (optionally waiting),
and reap every available completion into an output array.  cffi releases the
GIL around each call, so one call per loop step instead of one per request
keeps both the per-request cost and GIL hand-offs down.

It also carries the engine's C kernels, each one hot loop with a
pure-Python twin used when this module is not built (docs/design.md, "C
kernels"):

- ``hedge_bloom_set`` (a cffi function): the probe bits of every key of a
  table's bloom filter (hedge/lsm/bloom.py, ``BloomBuilder.finish``).
- Builtin functions of the CPython API, fetched by name from the dict
  ``hedge_builtins`` makes (hedge/io/kernels.py, ``load_builtin``).  They
  return Python objects, and hold the GIL as any builtin does, so a call
  from one of many threads does not hand the GIL to another; cffi could
  do neither:
  - ``bloom_probe``: whether one key's probe bits are all set
    (hedge/lsm/bloom.py, ``BloomFilter.may_contain``);
  - ``block_find`` and ``block_seek``: the binary search of a data block
    (hedge/lsm/block.py, ``Block.get`` and ``Block.lower_bound``);
  - ``block_entries``: the decoding of a data block's entries
    (``Block.entries_between``);
  - ``pread_now``: a read the page cache answers, straight into the bytes
    returned (hedge/io/ops.py, ``read_now``).

The staged-request and completion layouts are shared with hedge/io/uring.py
(struct formats REQ_FORMAT and CQE_FORMAT there); keep them in step.
"""
import importlib.util
import os
import sys

from cffi import FFI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _build_probe import uring_link  # noqa: E402


def _opcode_enum() -> str:
    """The C enum of hedge/io/opcodes.py's Op, so the codes are defined once.
    Loaded by path: this file also runs at build time, before the package
    is importable."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "opcodes.py")
    spec = importlib.util.spec_from_file_location("_hedge_opcodes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    items = ", ".join(f"HEDGE_OP_{op.name} = {op.value}" for op in module.Op)
    return "enum { " + items + " };"


CDEF = r"""
struct io_uring;
struct iovec { void *iov_base; size_t iov_len; };
struct __kernel_timespec { int64_t tv_sec; long long tv_nsec; };

typedef struct hedge_req {   /* 40 bytes; Python packs it with "=QQQiIIB3x" */
    uint64_t addr;           /* buffer / iovec array / path / timespec pointer */
    uint64_t off;            /* file offset; second path for renameat */
    uint64_t ud;             /* user_data tag: the executor's request id */
    int32_t fd;
    uint32_t len;            /* byte length / iovec count / poll mask / mode */
    uint32_t flags;          /* rw_flags / open flags / unlink flags */
    uint8_t op;              /* HEDGE_OP_*; never renumber */
    uint8_t pad[3];
} hedge_req;

typedef struct hedge_cqe {   /* 16 bytes; Python unpacks it with "=QiI" */
    uint64_t ud;
    int32_t res;
    uint32_t flags;
} hedge_cqe;

struct io_uring *hedge_ring_create(unsigned entries, unsigned want_flags,
                                   unsigned *got_flags, unsigned *sq_entries,
                                   unsigned *cq_entries, int *err);
void hedge_ring_destroy(struct io_uring *ring);
int hedge_enter(struct io_uring *ring, const hedge_req *reqs, unsigned n,
                unsigned *n_prepped, unsigned wait_nr, long long timeout_ns,
                hedge_cqe *out, unsigned max_out, int *err);
int io_uring_register_eventfd(struct io_uring *ring, int fd);

#define HEDGE_SETUP_SINGLE_ISSUER ...
#define HEDGE_SETUP_DEFER_TASKRUN ...
#define HEDGE_SETUP_COOP_TASKRUN ...

void hedge_bloom_set(const uint8_t *digests, size_t nkeys, uint8_t *bits, uint64_t nbits, unsigned probes);
"""

SOURCE = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <liburing.h>
#include <sys/uio.h>

#define HEDGE_SETUP_SINGLE_ISSUER IORING_SETUP_SINGLE_ISSUER
#define HEDGE_SETUP_DEFER_TASKRUN IORING_SETUP_DEFER_TASKRUN
#define HEDGE_SETUP_COOP_TASKRUN  IORING_SETUP_COOP_TASKRUN

typedef struct hedge_req {
    uint64_t addr; uint64_t off; uint64_t ud;
    int32_t fd; uint32_t len; uint32_t flags;
    uint8_t op; uint8_t pad[3];
} hedge_req;

typedef struct hedge_cqe { uint64_t ud; int32_t res; uint32_t flags; } hedge_cqe;

/* Operation codes: HEDGE_OP_* (generated from hedge/io/opcodes.py). */
@OPCODES@

/* Create a ring, trying the wanted setup flags first and dropping them one
   by one (newest first) when the kernel refuses them with EINVAL. */
struct io_uring *hedge_ring_create(unsigned entries, unsigned want_flags,
                                   unsigned *got_flags, unsigned *sq_entries,
                                   unsigned *cq_entries, int *err)
{
    struct io_uring *ring = calloc(1, sizeof(*ring));
    if (!ring) { *err = ENOMEM; return NULL; }
    unsigned tries[4] = {
        want_flags,
        want_flags & ~IORING_SETUP_DEFER_TASKRUN,
        want_flags & ~(IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER),
        0,
    };
    int ret = -EINVAL;
    for (int i = 0; i < 4; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        p.flags = tries[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 2;
        ret = io_uring_queue_init_params(entries, ring, &p);
        if (ret == 0) {
            *got_flags = tries[i];
            *sq_entries = p.sq_entries;
            *cq_entries = p.cq_entries;
            io_uring_register_ring_fd(ring);   /* optional speed-up; failure is fine */
            return ring;
        }
        if (ret != -EINVAL) break;
    }
    free(ring);
    *err = -ret;
    return NULL;
}

void hedge_ring_destroy(struct io_uring *ring)
{
    io_uring_queue_exit(ring);
    free(ring);
}

static void hedge_prep(struct io_uring_sqe *sqe, const hedge_req *r)
{
    void *addr = (void *)(uintptr_t)r->addr;
    switch (r->op) {
    case HEDGE_OP_READ:      io_uring_prep_read(sqe, r->fd, addr, r->len, r->off); break;
    case HEDGE_OP_WRITE:     io_uring_prep_write(sqe, r->fd, addr, r->len, r->off); break;
    case HEDGE_OP_READV:     io_uring_prep_readv(sqe, r->fd, addr, r->len, r->off); break;
    case HEDGE_OP_WRITEV:    io_uring_prep_writev(sqe, r->fd, addr, r->len, r->off); break;
    case HEDGE_OP_FSYNC:     io_uring_prep_fsync(sqe, r->fd, 0); break;
    case HEDGE_OP_FDATASYNC: io_uring_prep_fsync(sqe, r->fd, IORING_FSYNC_DATASYNC); break;
    case HEDGE_OP_TIMEOUT:   io_uring_prep_timeout(sqe, addr, 0, 0); break;
    case HEDGE_OP_POLL:      io_uring_prep_poll_add(sqe, r->fd, r->len); break;
    case HEDGE_OP_OPENAT:    io_uring_prep_openat(sqe, r->fd, addr, (int)r->flags, r->len); break;
    case HEDGE_OP_CLOSE:     io_uring_prep_close(sqe, r->fd); break;
    case HEDGE_OP_RENAMEAT:  io_uring_prep_renameat(sqe, r->fd, addr, r->fd,
                                                    (const char *)(uintptr_t)r->off, r->flags); break;
    case HEDGE_OP_UNLINKAT:  io_uring_prep_unlinkat(sqe, r->fd, addr, (int)r->flags); break;
    case HEDGE_OP_CANCEL:    io_uring_prep_cancel64(sqe, r->off, 0); break;
    default:                 io_uring_prep_nop(sqe); break;
    }
    io_uring_sqe_set_data64(sqe, r->ud);
}

/* One executor-loop step.  Prepares reqs[0..n) as SQEs (*n_prepped says how
   many fitted), submits them, waits for wait_nr completions when wait_nr > 0
   (at most timeout_ns when timeout_ns >= 0), then copies up to max_out
   completions into out.  Returns the number of completions copied; *err is 0
   or the negative errno of the submit call (-ETIME/-EINTR are not errors). */
int hedge_enter(struct io_uring *ring, const hedge_req *reqs, unsigned n,
                unsigned *n_prepped, unsigned wait_nr, long long timeout_ns,
                hedge_cqe *out, unsigned max_out, int *err)
{
    unsigned i;
    for (i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        if (!sqe) break;
        hedge_prep(sqe, &reqs[i]);
    }
    *n_prepped = i;

    int ret;
    if (wait_nr == 0) {
        ret = io_uring_submit_and_get_events(ring);
    } else if (timeout_ns >= 0) {
        struct __kernel_timespec ts;
        struct io_uring_cqe *cqe = NULL;
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        ret = io_uring_submit_and_wait_timeout(ring, &cqe, wait_nr, &ts, NULL);
    } else {
        ret = io_uring_submit_and_wait(ring, wait_nr);
    }
    *err = (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) ? ret : 0;

    unsigned head, count = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(ring, head, cqe) {
        if (count == max_out) break;
        out[count].ud = cqe->user_data;
        out[count].res = cqe->res;
        out[count].flags = cqe->flags;
        count++;
    }
    io_uring_cq_advance(ring, count);
    return (int)count;
}

/* Kernel: set the probe bits of nkeys keys in a bloom bitmap of nbits bits
   (docs/format/bloom.md).  digests holds one 16-byte xxh3_128 digest per
   key, big-endian: h2 (high half) first, then h1.  Probe i of a key is bit
   (h1 + i*h2) mod nbits, taken as b + i*d with both reduced.  Twin:
   hedge/lsm/bloom.py, _set_bits_python. */
static uint64_t hedge_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

void hedge_bloom_set(const uint8_t *digests, size_t nkeys, uint8_t *bits, uint64_t nbits, unsigned probes)
{
    for (size_t i = 0; i < nkeys; i++) {
        const uint8_t *digest = digests + 16 * i;
        uint64_t b = hedge_be64(digest + 8) % nbits;
        uint64_t d = hedge_be64(digest) % nbits;
        bits[b >> 3] |= (uint8_t)(1u << (b & 7));
        for (unsigned j = 1; j < probes; j++) {
            b += d;
            if (b >= nbits)
                b -= nbits;
            bits[b >> 3] |= (uint8_t)(1u << (b & 7));
        }
    }
}

/* 1 when every probe bit of the key whose 16-byte digest (as above) is
   given is set in the bitmap, 0 as soon as one is not (the builtin
   bloom_probe's).  Twin:
   hedge/lsm/bloom.py, BloomFilter.may_contain's Python probes. */
static int hedge_bloom_probe(const uint8_t *bits, uint64_t nbits, unsigned probes, const char *digest)
{
    const uint8_t *d8 = (const uint8_t *)digest;
    uint64_t b = hedge_be64(d8 + 8) % nbits;
    if (!(bits[b >> 3] & (1u << (b & 7))))
        return 0;
    uint64_t d = hedge_be64(d8) % nbits;
    for (unsigned j = 1; j < probes; j++) {
        b += d;
        if (b >= nbits)
            b -= nbits;
        if (!(bits[b >> 3] & (1u << (b & 7))))
            return 0;
    }
    return 1;
}

/* The binary search of a data block, for the builtins block_find and
   block_seek (docs/format/table.md, "Data block"): entries of header (key
   length u32, value length u32, seq << 8 | kind u64, little-endian), key,
   value; then count u32 entry offsets, the count and the checksum (12
   bytes).  Entry order is key ascending, then
   seq descending.  Every offset and key length is checked against the
   block before it is read: a block whose checksum matched but whose
   offsets do not fit (a bug, or a forged file) gives HEDGE_BLOCK_CORRUPT,
   never a read outside it.  Twins: hedge/lsm/block.py, the Python search
   in Block.get and Block.lower_bound. */
#define HEDGE_BLOCK_ABSENT  (-1L)
#define HEDGE_BLOCK_CORRUPT (-2L)

static uint32_t hedge_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t hedge_le64(const unsigned char *p)
{
    return (uint64_t)hedge_le32(p) | (uint64_t)hedge_le32(p + 4) << 32;
}

/* The entry count and the end of the entries' area (where the offsets
   begin) from a block's trailer; 0, or -1 when the trailer is impossible. */
static int hedge_block_layout(const unsigned char *b, size_t size, uint32_t *count, size_t *entries_end)
{
    if (size < 12)
        return -1;
    uint32_t n = hedge_le32(b + size - 12);
    if ((size - 12) / 4 < n)
        return -1;
    *count = n;
    *entries_end = size - 12 - 4 * (size_t)n;
    return 0;
}

/* The user key of entry i: its bytes and length; 0, or -1 when the entry
   does not fit inside the entries' area (entries_end bytes). */
static int hedge_block_key(const unsigned char *b, const unsigned char *offsets, size_t entries_end,
                           uint32_t i, uint32_t *entry, uint32_t *key_len)
{
    uint32_t off = hedge_le32(offsets + 4 * (size_t)i);
    if (off > entries_end || entries_end - off < 16)
        return -1;
    uint32_t len = hedge_le32(b + off);
    if (len > entries_end - off - 16)
        return -1;
    *entry = off;
    *key_len = len;
    return 0;
}

/* The value length and seq << 8 | kind of the entry at off, whose key
   (key_len bytes) fits (hedge_block_key); 0, or -1 when its value does not
   fit inside the entries' area or its kind byte is impossible. */
static int hedge_block_value(const unsigned char *b, size_t entries_end, uint32_t off, uint32_t key_len,
                             uint32_t *value_len, uint64_t *seq_kind)
{
    uint32_t len = hedge_le32(b + off + 4);
    uint64_t sk = hedge_le64(b + off + 8);
    if (len > entries_end - off - 16 - key_len || (sk & 0xFF) > 1)
        return -1;
    *value_len = len;
    *seq_kind = sk;
    return 0;
}

/* Index of the first entry at or after (key, snapshot_seq) in entry order:
   the first whose user key is greater, or equal with seq <= snapshot_seq
   (the entry count when there is none); for that entry, *entry is its
   offset and *equal says whether its user key is key.  The count comes
   from the block's trailer.  HEDGE_BLOCK_CORRUPT when the trailer or an
   offset is impossible. */
static long hedge_block_search(const unsigned char *b, size_t size,
                               const unsigned char *key, size_t key_len, uint64_t snapshot_seq,
                               uint32_t *entry, int *equal)
{
    *equal = 0;
    uint32_t count;
    size_t entries_end;
    if (hedge_block_layout(b, size, &count, &entries_end) < 0)
        return HEDGE_BLOCK_CORRUPT;
    const unsigned char *offsets = b + entries_end;
    uint32_t lo = 0, hi = count, off, len;
    while (lo < hi) {
        uint32_t mid = lo + ((hi - lo) >> 1);
        if (hedge_block_key(b, offsets, entries_end, mid, &off, &len) < 0)
            return HEDGE_BLOCK_CORRUPT;
        int c = memcmp(b + off + 16, key, len < key_len ? len : key_len);
        if (c == 0)
            c = len < key_len ? -1 : len > key_len;
        if (c < 0 || (c == 0 && hedge_le64(b + off + 8) >> 8 > snapshot_seq))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < count) {
        if (hedge_block_key(b, offsets, entries_end, lo, &off, &len) < 0)
            return HEDGE_BLOCK_CORRUPT;
        *entry = off;
        *equal = len == key_len && memcmp(b + off + 16, key, key_len) == 0;
    }
    return (long)lo;
}

/* Block.lower_bound: the index of the first entry whose user key is >= key. */
static long hedge_block_seek(const char *block, size_t size, const char *key, size_t key_len)
{
    uint32_t entry;
    int equal;
    return hedge_block_search((const unsigned char *)block, size, (const unsigned char *)key, key_len,
                              UINT64_MAX, &entry, &equal);
}

/* Block.get: the offset of the entry holding the newest version of key
   with seq <= snapshot_seq, HEDGE_BLOCK_ABSENT when the block holds none. */
static long hedge_block_find(const char *block, size_t size, const char *key, size_t key_len,
                             uint64_t snapshot_seq)
{
    uint32_t entry;
    int equal;
    long i = hedge_block_search((const unsigned char *)block, size, (const unsigned char *)key, key_len,
                                snapshot_seq, &entry, &equal);
    if (i < 0)
        return i;
    return equal ? (long)entry : HEDGE_BLOCK_ABSENT;
}

/* Kernels that return Python objects: builtin functions of the CPython
   API, not cffi calls.  They build their objects themselves, and hold the
   GIL like any builtin (cffi releases it around its calls, and cannot
   return objects).  cffi's cdef cannot name PyObject, so hedge/io/kernels.py
   fetches them once, by name, from the dict hedge_builtins returns
   (called through ctypes.PyDLL, which holds the GIL for the call). */

/* Block.entries_between's decoding (hedge/lsm/block.py; the Python loop
   there is its twin).  block_entries(block, first, stop) -> list of (key,
   seq, kind, value), the entries at index first up to stop, or None when
   the trailer, an offset, a length or a kind byte is impossible (a block
   whose checksum matched: a bug, or a forged file).  Every offset and
   length is checked against the entries' area before it is read. */
static PyObject *hedge_block_entries(PyObject *self, PyObject *args)
{
    PyObject *data;
    char *block;
    Py_ssize_t size, first, stop;
    (void)self;
    if (!PyArg_ParseTuple(args, "Snn", &data, &first, &stop) || PyBytes_AsStringAndSize(data, &block, &size) < 0)
        return NULL;
    const unsigned char *b = (const unsigned char *)block;
    uint32_t count;
    size_t entries_end;
    if (hedge_block_layout(b, (size_t)size, &count, &entries_end) < 0
            || first < 0 || stop < first || (size_t)stop > count)
        Py_RETURN_NONE;
    const unsigned char *offsets = b + entries_end;
    PyObject *out = PyList_New(stop - first);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = first; i < stop; i++) {
        uint32_t off, klen, vlen;
        uint64_t sk;
        if (hedge_block_key(b, offsets, entries_end, (uint32_t)i, &off, &klen) < 0
                || hedge_block_value(b, entries_end, off, klen, &vlen, &sk) < 0)
            goto corrupt;
        PyObject *entry = PyTuple_New(4);
        if (entry == NULL)
            goto fail;
        PyList_SetItem(out, i - first, entry);   /* steals: out owns it now */
        PyObject *key = PyBytes_FromStringAndSize(block + off + 16, klen);
        if (key == NULL)
            goto fail;
        PyTuple_SetItem(entry, 0, key);
        PyObject *seq = PyLong_FromUnsignedLongLong(sk >> 8);
        if (seq == NULL)
            goto fail;
        PyTuple_SetItem(entry, 1, seq);
        PyObject *kind = PyLong_FromLong((long)(sk & 0xFF));
        if (kind == NULL)
            goto fail;
        PyTuple_SetItem(entry, 2, kind);
        PyObject *value = PyBytes_FromStringAndSize(block + off + 16 + klen, vlen);
        if (value == NULL)
            goto fail;
        PyTuple_SetItem(entry, 3, value);
    }
    return out;
corrupt:
    Py_DECREF(out);
    Py_RETURN_NONE;
fail:
    Py_DECREF(out);
    return NULL;
}

/* ops.read_now's read (hedge/io/ops.py; os.preadv into a pooled buffer
   and a copy out is its twin).  pread_now(fd, offset, length, flags) ->
   the length bytes at offset, read with one preadv2(flags) straight into
   the bytes object returned (no buffer, no copy); None when it returned
   fewer (end of file, or part of the range not in the page cache); the
   errno as an int when it failed (EAGAIN: the pages are not all in the
   page cache, with RWF_NOWAIT).  The GIL is released around the call. */
static PyObject *hedge_pread_now(PyObject *self, PyObject *args)
{
    int fd, flags;
    long long offset;
    Py_ssize_t length;
    (void)self;
    if (!PyArg_ParseTuple(args, "iLni", &fd, &offset, &length, &flags))
        return NULL;
    if (offset < 0 || length < 0) {
        PyErr_SetString(PyExc_ValueError, "pread_now: negative offset or length");
        return NULL;
    }
    PyObject *data = PyBytes_FromStringAndSize(NULL, length);
    if (data == NULL)
        return NULL;
    struct iovec iov = {PyBytes_AsString(data), (size_t)length};
    ssize_t n;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    n = preadv2(fd, &iov, 1, (off_t)offset, flags);
    if (n < 0)
        err = errno;
    Py_END_ALLOW_THREADS
    if (n == (ssize_t)length)
        return data;
    Py_DECREF(data);
    if (n < 0)
        return PyLong_FromLong(err);
    Py_RETURN_NONE;
}

/* Block.get's search (hedge/lsm/block.py; the Python search there is its
   twin).  block_find(block, key, snapshot_seq) -> (seq, kind, value) of
   the newest version of key with seq <= snapshot_seq, None when the block
   holds none, False when the trailer or an offset is impossible, or when
   the entry found does not fit or has an impossible kind byte. */
static PyObject *hedge_block_find_builtin(PyObject *self, PyObject *args)
{
    PyObject *data, *key;
    char *block, *k;
    Py_ssize_t size, klen;
    unsigned long long snapshot;
    (void)self;
    if (!PyArg_ParseTuple(args, "SSK", &data, &key, &snapshot) || PyBytes_AsStringAndSize(data, &block, &size) < 0
            || PyBytes_AsStringAndSize(key, &k, &klen) < 0)
        return NULL;
    long off = hedge_block_find(block, (size_t)size, k, (size_t)klen, (uint64_t)snapshot);
    if (off == HEDGE_BLOCK_ABSENT)
        Py_RETURN_NONE;
    if (off < 0)
        Py_RETURN_FALSE;
    const unsigned char *b = (const unsigned char *)block;
    /* The search checked the trailer, and the entry's header and key
       against the entries' area; the value and kind are checked here. */
    uint32_t count, vlen;
    size_t entries_end;
    uint64_t sk;
    if (hedge_block_layout(b, (size_t)size, &count, &entries_end) < 0
            || hedge_block_value(b, entries_end, (uint32_t)off, (uint32_t)klen, &vlen, &sk) < 0)
        Py_RETURN_FALSE;
    PyObject *found = PyTuple_New(3), *item;
    if (found == NULL)
        return NULL;
    if ((item = PyLong_FromUnsignedLongLong(sk >> 8)) == NULL)
        goto fail;
    PyTuple_SetItem(found, 0, item);
    if ((item = PyLong_FromLong((long)(sk & 0xFF))) == NULL)
        goto fail;
    PyTuple_SetItem(found, 1, item);
    if ((item = PyBytes_FromStringAndSize(block + off + 16 + klen, vlen)) == NULL)
        goto fail;
    PyTuple_SetItem(found, 2, item);
    return found;
fail:
    Py_DECREF(found);
    return NULL;
}

/* Block.lower_bound's search (hedge/lsm/block.py; twin as above).
   block_seek(block, key) -> the index of the first entry whose user key is
   >= key, or -1 when the trailer or an offset is impossible. */
static PyObject *hedge_block_seek_builtin(PyObject *self, PyObject *args)
{
    PyObject *data, *key;
    char *block, *k;
    Py_ssize_t size, klen;
    (void)self;
    if (!PyArg_ParseTuple(args, "SS", &data, &key) || PyBytes_AsStringAndSize(data, &block, &size) < 0
            || PyBytes_AsStringAndSize(key, &k, &klen) < 0)
        return NULL;
    long i = hedge_block_seek(block, (size_t)size, k, (size_t)klen);
    return PyLong_FromLong(i < 0 ? -1 : i);
}

/* BloomFilter.may_contain's probes (hedge/lsm/bloom.py; the Python probes
   there are its twin).  bloom_probe(bitmap, nbits, probes, digest) ->
   whether every probe bit of the key whose 16-byte digest is given is
   set in the first nbits bits of bitmap.  ValueError when nbits is 0 or
   more than the bitmap holds, or the digest is not 16 bytes. */
static PyObject *hedge_bloom_probe_builtin(PyObject *self, PyObject *args)
{
    PyObject *bitmap, *digest;
    char *bits, *d;
    Py_ssize_t nbytes, dlen;
    unsigned long long nbits;
    unsigned int probes;
    (void)self;
    if (!PyArg_ParseTuple(args, "SKIS", &bitmap, &nbits, &probes, &digest)
            || PyBytes_AsStringAndSize(bitmap, &bits, &nbytes) < 0 || PyBytes_AsStringAndSize(digest, &d, &dlen) < 0)
        return NULL;
    if (nbits == 0 || (nbits + 7) / 8 > (unsigned long long)nbytes || dlen != 16) {
        PyErr_SetString(PyExc_ValueError, "bloom_probe: nbits does not fit the bitmap, or the digest is not 16 bytes");
        return NULL;
    }
    return PyBool_FromLong(hedge_bloom_probe((const uint8_t *)bits, nbits, probes, d));
}

static PyMethodDef hedge_builtin_defs[] = {
    {"block_find", hedge_block_find_builtin, METH_VARARGS,
     "block_find(block, key, snapshot_seq): (seq, kind, value), None when absent, False for a corrupt block."},
    {"block_seek", hedge_block_seek_builtin, METH_VARARGS,
     "block_seek(block, key): the index of the first entry >= key, -1 for a corrupt block."},
    {"bloom_probe", hedge_bloom_probe_builtin, METH_VARARGS,
     "bloom_probe(bitmap, nbits, probes, digest): whether every probe bit is set."},
    {"pread_now", hedge_pread_now, METH_VARARGS,
     "pread_now(fd, offset, length, flags): the bytes read, None when fewer, or the errno."},
    {"block_entries", hedge_block_entries, METH_VARARGS,
     "block_entries(block, first, stop): the decoded entries first..stop-1, or None for a corrupt block."},
    {NULL, NULL, 0, NULL}
};

/* A new dict of the builtin kernels by name, or NULL with the exception
   set.  REQUIRES: the GIL. */
PyObject *hedge_builtins(void)
{
    PyObject *functions = PyDict_New();
    if (functions == NULL)
        return NULL;
    for (PyMethodDef *def = hedge_builtin_defs; def->ml_name != NULL; def++) {
        PyObject *function = PyCFunction_NewEx(def, NULL, NULL);
        if (function == NULL || PyDict_SetItemString(functions, def->ml_name, function) < 0) {
            Py_XDECREF(function);
            Py_DECREF(functions);
            return NULL;
        }
        Py_DECREF(function);
    }
    return functions;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "hedge.io._uring",
    SOURCE.replace("@OPCODES@", _opcode_enum()),
    extra_compile_args=["-O2"],
    **uring_link(),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
