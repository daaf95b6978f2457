"""perf.scan_mix_bench runs end to end on a tiny database: every round
prints a time per scan for each pass, the cache's counters, and the tables
per level, which hold the load; with --against, the rounds alternate
between two trees, each run in a subprocess that really imports its own."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

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


def test_against_alternates_the_trees_and_checks_which_hedge_each_round_ran(tmp_path, monkeypatch, capsys):
    from perf import ab

    repo = Path(scan_mix_bench.__file__).resolve().parents[1]
    tree = tmp_path / "tree"
    shutil.copytree(repo / "hedge", tree / "hedge", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(ab, "export_tree", lambda rev, repo: str(tree))   # REV's hedge/: a copy
    dbs = tmp_path / "dbs"
    dbs.mkdir()
    scan_mix_bench.main(["--records", "2000", "--updates", "200", "--scans", "100", "--rounds", "2",
                         "--against", "REV", "--dir", str(dbs)])
    out = capsys.readouterr().out
    assert re.findall(r"round (\d), (REV|this tree): µs per scan", out) == [
        ("1", "REV"), ("1", "this tree"), ("2", "this tree"), ("2", "REV")], out
    assert re.search(r"median µs per scan \(passes after the first\): REV [\d.]+, this tree [\d.]+, ratio [\d.]+",
                     out), out
    assert not tree.exists()                        # the export is removed
    assert list(dbs.iterdir()) == []
