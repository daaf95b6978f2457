"""perf.client_cost drives the benchmark's client programs to a store that
answers at once, under both runners, and prints each one's µs per
operation; every operation reaches the store."""
from __future__ import annotations

import re

import pytest

from perf import client_cost
from perf.workload import standard


def test_a_tiny_run_prints_a_row_per_workload(capsys):
    client_cost.main(["--workloads", "C,F", "--records", "500", "--operations", "200", "--clients", "8",
                      "--rounds", "2"])
    out = capsys.readouterr().out
    rows = re.findall(r"^([A-F])\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert [r[0] for r in rows] == ["C", "F"], out
    assert all(float(x) > 0 for r in rows for x in r[1:]), out


@pytest.mark.parametrize("runner", client_cost.RUNNERS)
def test_every_operation_reaches_the_store(tmp_path, runner):
    import hedge

    db = hedge.open(str(tmp_path / "db"), create=True)
    try:
        store = client_cost.AnswerAtOnce(db)
        workload = standard("C")[0]           # reads only: one request per operation
        programs = client_cost.programs_for(workload, records=300, operations=97, clients=8,
                                            value_size=100, seed=1)
        client_cost.time_runner(store, runner, programs)
        assert store.requests == 97
        # F's read-modify-writes make two requests each.
        programs = client_cost.programs_for(standard("F")[0], records=300, operations=97, clients=8,
                                            value_size=100, seed=1)
        before = store.requests
        client_cost.time_runner(store, runner, programs)
        assert 97 < store.requests - before < 2 * 97
    finally:
        db.close()


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        client_cost.main(["--operations", "0"])
    with pytest.raises(SystemExit):
        client_cost.main(["--workloads", "Q"])
