"""Calls the type hints must refuse, one per line that tests/test_typing.py
expects mypy to flag (never run)."""
import hedge

db = hedge.open("/nowhere")
db.put("text", b"v")                        # error: str key
value: str = db.get(b"k")                   # error: bytes | None
db.compact(1)                               # error: int bound
hedge.WriteBatch().put(b"k", 3)             # error: int value
db.aio.put(b"k", "v")                       # error: str value
db.checkpoint(3)                            # error: int path
hedge.destroy(None)                         # error: None path
db.scan(reverse="yes")                      # error: str flag
db.cursor().seek("k")                       # error: str key
key: str = db.cursor().key()                # error: bytes
db.aio.cursor().seek_for_prev(1)            # error: int key
