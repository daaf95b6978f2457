"""Smoke test of the raw ring benchmark (perf/ring_bench.py): a short run on
a 16 MiB file through ``main``, checking the JSON, the figures and that the
reads returned the file's bytes."""
import json
import os
import re

import pytest

from hedge.exec import Executor
from hedge.io.backend import available_methods
from hedge.io.file import File
from perf import ring_bench

LAST_LINE = re.compile(r"qd32 io_uring/fio = (\d+\.\d\d|n/a \(.+\))")


def _run(capsys, *argv) -> tuple[int, dict, list[str]]:
    status = ring_bench.main(list(argv))
    lines = capsys.readouterr().out.splitlines()
    json_path = argv[list(argv).index("--json") + 1]
    with open(json_path) as f:
        return status, json.load(f), lines


def test_quick_run_measures_every_method_and_reads_the_right_bytes(tmp_path, capsys):
    status, result, lines = _run(capsys, "--quick", "--size", "16M", "--seconds", "0.3", "--qd", "1,8",
                                 "--dir", str(tmp_path), "--json", str(tmp_path / "out.json"), "--keep")
    assert status == 0
    assert LAST_LINE.fullmatch(lines[-1]), lines[-1]
    assert result["summary"] == lines[-1]
    env = result["environment"]
    for key in ("kernel", "liburing", "cpu_model", "cores", "python", "io_methods_available", "io_uring"):
        assert env[key] not in (None, ""), key
    methods = available_methods()
    assert result["config"]["methods"] == methods
    hedge_points = {(p["method"], p["qd"]): p for p in result["points"] if p["engine"] == "hedge"}
    assert set(hedge_points) == {(m, qd) for m in methods for qd in (1, 8)}
    for (method, qd), p in hedge_points.items():
        assert "error" not in p, p
        assert p["iops"] > 0 and p["reads"] > 0
        assert p["mib_s"] == pytest.approx(p["iops"] * 4096 / (1 << 20))
        assert p["lat_us"] == pytest.approx(qd / p["iops"] * 1e6)
        assert p["submit_calls"] > 0 and p["mean_batch"] > 0
        assert p["max_in_flight"] >= qd
    for p in result["points"]:
        if p["engine"] == "fio":
            assert "error" not in p, p
            assert p["iops"] > 0 and "--iodepth=%d" % p["qd"] in p["command"]
    for method in methods:
        assert result["verify"][method] == {"reads": ring_bench.VERIFY_READS, "mismatches": 0, "bad_offsets": []}
    # --keep left the file, and a second run reuses it instead of rewriting it.
    path = result["config"]["path"]
    assert result["config"]["file_written"] and os.path.getsize(path) == 16 << 20
    status, again, lines = _run(capsys, "--size", "16M", "--seconds", "0.2", "--qd", "1", "--methods", "sync",
                                "--no-fio", "--dir", str(tmp_path), "--json", str(tmp_path / "again.json"))
    assert status == 0 and not again["config"]["file_written"]
    assert lines[-1] == "qd32 io_uring/fio = n/a (io_uring not measured)"
    assert not os.path.exists(path)


def test_verification_pass_catches_a_block_with_the_wrong_bytes(tmp_path):
    path = str(tmp_path / "data")
    ring_bench.prepare_file(path, 1 << 20)
    offsets = [i * 4096 for i in range(256)]
    with open(path, "r+b") as f:
        f.seek(17 * 4096)
        f.write(ring_bench.block_pattern(18))
    with Executor(io_method="sync") as ex:
        file = File.open(path, os.O_RDONLY, direct=True)
        try:
            report = ex.run_sync(ring_bench._verify(file, path, offsets, 256, 4))
        finally:
            file.close()
    assert report["reads"] == 256
    assert report["mismatches"] == 1 and report["bad_offsets"] == [17 * 4096]


def test_a_damaged_file_is_rewritten_not_reused(tmp_path):
    path = str(tmp_path / "data")
    assert ring_bench.prepare_file(path, 1 << 20)
    assert not ring_bench.prepare_file(path, 1 << 20)
    with open(path, "r+b") as f:
        f.write(b"\0" * 4096)
    assert ring_bench.prepare_file(path, 1 << 20)
    assert ring_bench.prepare_file(path, 2 << 20)  # a different size is rewritten
    assert os.path.getsize(path) == 2 << 20


def test_ratio_line_divides_io_uring_by_fio_at_qd32():
    points = [{"label": "fio", "qd": 32, "iops": 1000.0}, {"label": "io_uring", "qd": 32, "iops": 870.0}]
    ratio, line = ring_bench.ratio_line(points, [32], None, ["io_uring"])
    assert ratio == pytest.approx(0.87) and line == "qd32 io_uring/fio = 0.87"
    ratio, line = ring_bench.ratio_line(points, [32], "fio not installed", ["io_uring"])
    assert ratio is None and line == "qd32 io_uring/fio = n/a (fio not installed)"
