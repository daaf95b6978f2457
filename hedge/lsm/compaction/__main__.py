"""Entry point of the compaction worker process (``python -m
hedge.lsm.compaction FD``; hedge/lsm/compaction/worker.py): serves jobs on
the socket FD until told to stop or the socket closes."""
import sys

from hedge.lsm.compaction.worker import serve

serve(int(sys.argv[1]))
