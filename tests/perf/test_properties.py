"""YCSB workload files: .properties parsing and their mapping onto a workload
and run settings (flags win over the file, the file over the defaults)."""
import pytest

from perf.properties import load_workload_file, parse_properties, workload_from_properties
from perf.ycsb import build_parser, make_plan

WORKLOAD_E = r"""
# Yahoo! Cloud System Benchmark
# Workload E: Short ranges
!   a comment with a bang
recordcount=1000
operationcount = 2000
workload=site.ycsb.workloads.CoreWorkload

readallfields=true

readproportion=0
updateproportion=0
scanproportion=0.95
insertproportion:0.05
requestdistribution zipfian
maxscanlength=100
scanlengthdistribution=uniform
fieldcount=4
fieldlength=\
    25
insertorder=ordered
"""


def test_parse_handles_separators_comments_continuations_and_escapes():
    props = parse_properties(WORKLOAD_E + "weird\\ key=a\\tb\\u0041\nempty=\n")
    assert props["recordcount"] == "1000"
    assert props["operationcount"] == "2000"
    assert props["insertproportion"] == "0.05"
    assert props["requestdistribution"] == "zipfian"
    assert props["fieldlength"] == "25"
    assert props["weird key"] == "a\tbA"
    assert props["empty"] == ""
    assert not any(k.startswith(("#", "!")) for k in props)


def test_workload_file_maps_to_workload_and_settings(tmp_path):
    path = tmp_path / "workloade"
    path.write_text(WORKLOAD_E)
    file = load_workload_file(path)
    w = file.workload
    assert w.name == "workloade"
    assert (w.read, w.update, w.scan, w.insert, w.rmw) == (0, 0, 0.95, 0.05, 0)
    assert w.request_distribution == "zipfian"
    assert (w.min_scan_length, w.max_scan_length, w.scan_length_distribution) == (1, 100, "uniform")
    assert (file.records, file.operations, file.fields, file.field_length) == (1000, 2000, 4, 25)
    assert file.insert_order == "ordered"
    assert file.ignored == ["readallfields", "workload"]


def test_missing_properties_take_ycsb_defaults():
    file = workload_from_properties({}, "empty")
    w = file.workload
    assert (w.read, w.update, w.scan, w.insert) == (0.95, 0.05, 0, 0)
    assert w.request_distribution == "uniform"
    assert w.max_scan_length == 1000
    assert file.records is None and file.fields is None


@pytest.mark.parametrize("props, message", [
    ({"requestdistribution": "hotspot"}, "request distribution"),
    ({"recordcount": "many"}, "integer"),
    ({"readproportion": "x"}, "number"),
    ({"nosuchproperty": "1"}, "unknown"),
    ({"insertorder": "random"}, "insertorder"),
])
def test_bad_properties_are_refused(props, message):
    with pytest.raises(ValueError, match=message):
        workload_from_properties(props, "bad")


def test_flags_override_the_file_which_overrides_defaults(tmp_path):
    path = tmp_path / "workloade"
    path.write_text(WORKLOAD_E)
    plan = make_plan(build_parser().parse_args(["--properties", str(path), "--records", "500"]))
    assert plan.config.records == 500           # flag
    assert plan.config.operations == 2000       # file
    assert plan.config.value_size == 4 * 25     # file's fields x length
    assert plan.config.insert_order == "ordered"
    assert plan.config.store.clients == 64      # default
    assert [w.name for w in plan.workloads] == ["workloade"]
    with pytest.raises(ValueError):
        make_plan(build_parser().parse_args(["--properties", str(path), "--workloads", "A"]))
