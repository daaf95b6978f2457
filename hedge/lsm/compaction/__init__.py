"""Compaction: merging tables down the levels of the tree.

- ``policy``: which tables to compact next and how the result changes the
  version (pure functions of a Version; docs/compaction.md).
- ``merge``: which entries of the merged input survive a compaction.
- ``runner``: reads the input tables and writes the output tables through
  the ring (``merge_tables``), for the engine and for the worker.
- ``worker``: the worker process that runs ``merge_tables`` with its own GIL,
  and the parent's handle on it (``__main__`` is its entry point).

``policy`` and ``merge`` are pure; ``runner`` and ``worker`` do I/O.
"""
