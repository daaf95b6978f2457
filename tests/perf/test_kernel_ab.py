"""perf.kernel_ab runs end to end on a tiny database: every round prints
the kernel's and the twin's time per operation, the summary their medians
and ratio, and the kernel is in use again afterwards."""
from __future__ import annotations

import re

import pytest

from hedge.lsm import block
from perf import kernel_ab


@pytest.mark.parametrize("kernel, workload", [("decode", "scans"), ("search", "gets")])
def test_a_tiny_run_prints_each_round_and_the_ratio(tmp_path, capsys, kernel, workload):
    available, _use = kernel_ab.KERNELS[kernel]
    if not available():
        pytest.skip(f"the {kernel} kernel is not built (hedge.io._uring) or HEDGE_PURE_PYTHON is set")
    kernel_ab.main(["--kernel", kernel, "--workload", workload, "--records", "3000", "--updates", "300",
                    "--ops", "200", "--rounds", "2", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    unit = "get" if workload == "gets" else "scan"
    rounds = re.findall(rf"round (\d): kernel ([\d.]+), twin ([\d.]+) µs per {unit}", out)
    assert [r[0] for r in rounds] == ["1", "2"], out
    assert all(float(x) > 0 for r in rounds for x in r[1:]), out
    m = re.search(rf"median µs per {unit} \(rounds after the first\): kernel ([\d.]+), twin ([\d.]+), "
                  r"ratio ([\d.]+)", out)
    assert m and abs(float(m[1]) / float(m[2]) - float(m[3])) < 0.002, out
    assert list(tmp_path.iterdir()) == []                   # nothing left behind
    assert block._find is not None and block._decode is not None    # the kernels in use again


def test_one_round_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        kernel_ab.main(["--kernel", "read", "--rounds", "1", "--dir", str(tmp_path)])
