"""perf.scan_mix_bench runs end to end on a tiny database: every round
prints a time per scan for each pass, the cache's counters, and the tables
per level, which hold the load."""
from __future__ import annotations

import re

from perf import scan_mix_bench


def test_a_tiny_run_prints_each_round(tmp_path, capsys):
    scan_mix_bench.main(["--records", "3000", "--updates", "300", "--scans", "200", "--rounds", "2",
                         "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    rounds = re.findall(r"round (\d): µs per scan ([\d.]+) ([\d.]+) ([\d.]+); cache hits ([\d,]+) misses ([\d,]+); "
                        r"tables per level \[([\d, ]+)\]", out)
    assert [r[0] for r in rounds] == ["1", "2"], out
    for r in rounds:
        assert all(float(x) > 0 for x in r[1:4])
        assert int(r[4].replace(",", "")) + int(r[5].replace(",", "")) > 0    # the scans read blocks
        assert sum(int(n) for n in r[6].split(",")) >= 1                      # the load is in tables
    assert list(tmp_path.iterdir()) == []                                   # nothing left behind
