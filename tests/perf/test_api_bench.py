"""perf.api_bench's calls part: it measures every API form it names, on a
database it removes afterwards."""
from __future__ import annotations

import argparse
import os

from perf import api_bench


def test_calls_part_times_each_api_form_and_cleans_up(tmp_path):
    args = argparse.Namespace(keys=300, value_bytes=20, pin=False)
    out = api_bench.part_calls(args, str(tmp_path))
    assert set(out) == {f"{form}, {where}" for form in ("db.get", "await db.aio.get in a task")
                        for where in ("memtable", "cached table")}
    assert all(0 < us < 10_000 for us in out.values()), out
    assert os.listdir(tmp_path) == []
