"""perf: hedge's benchmarks.

``python -m perf.ycsb`` is a YCSB-style driver (load phase, then workloads A-F)
that runs hedge and its peers (rocksdict, plyvel, lmdb, sqlite3) through small
adapters in ``perf/stores``, one file per store, on the same operation streams.
Nothing in ``hedge`` imports this package.
"""
