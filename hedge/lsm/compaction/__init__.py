"""Compaction: merging tables down the levels of the tree.

- ``policy``: which tables to compact next and how the result changes the
  version (pure functions of a Version; docs/compaction.md).
- ``merge``: which entries of the merged input survive a compaction.

The runner that reads input tables and writes output tables through the ring
lives with the engine; nothing here does I/O.
"""
