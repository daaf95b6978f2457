"""Short end-to-end runs of the driver: sqlite3 and lmdb, and hedge beside
sqlite3, through the command line with verification, the JSON it writes, a deliberately stale store that
the verifier must catch, and the hedge adapter (skipped when hedge is absent
or incomplete; driven through a stand-in module built on asyncio)."""
import asyncio
import json
import types

import pytest

from perf import stores
from perf.driver import RunConfig, StoreBenchmark
from perf.keys import KeySpace
from perf.stores import hedge_store
from perf.stores.base import StoreConfig
from perf.values import ValueFactory
from perf.workload import STANDARD
from perf.ycsb import main

PHASE_FIELDS = {"phase", "description", "operations", "elapsed_s", "throughput_ops_s", "ops", "verify", "note"}
OP_FIELDS = {"count", "throughput_ops_s", "avg_us", "p50_us", "p95_us", "p99_us", "p999_us", "min_us", "max_us"}
STORE_FIELDS = {"name", "status", "reason", "settings", "load_durability", "disk_bytes_after_load",
                "background_bytes_after_load", "logical_bytes_loaded", "write_amplification",
                "space_amplification", "phases"}
TOP_FIELDS = {"schema", "started", "finished", "duration_s", "command", "config", "workloads", "notes",
              "environment", "data_bytes", "cache_bytes", "stores", "plots"}
ENV_FIELDS = {"cpu", "cores", "cpus_allowed", "kernel", "python", "liburing", "memory_bytes", "db_dir",
              "file_system", "io_uring_disabled_sysctl"}
WORKLOAD_OPS = {"A": {"read", "update"}, "B": {"read", "update"}, "C": {"read"}, "D": {"read", "insert"},
                "E": {"scan", "insert"}, "F": {"read", "rmw"}}


@pytest.mark.parametrize("names", [("sqlite", "lmdb"), ("hedge", "hedge-threads", "sqlite")])
def test_stores_run_every_workload_with_every_read_verified(tmp_path, capsys, names):
    results = tmp_path / "results"
    code = main(["--stores", ",".join(names), "--records", "2000", "--operations", "3000", "--workloads", "all",
                 "--clients", "8", "--verify", "--progress", "never", "--results", str(results)])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert f"results: {results / 'results.json'}" in out.out
    data = json.loads((results / "results.json").read_text())
    assert set(data) == TOP_FIELDS
    assert set(data["environment"]) == ENV_FIELDS
    assert data["plots"] == ["throughput.png", "latency.png"]
    for name in data["plots"]:
        assert (results / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [s["name"] for s in data["stores"]] == list(names)
    for store in data["stores"]:
        assert set(store) == STORE_FIELDS
        assert store["status"] == "ok", store["reason"]
        assert "durability" in store["settings"] and "page_cache" in store["settings"]
        assert store["disk_bytes_after_load"] > 2000 * 1000
        assert [p["phase"] for p in store["phases"]] == ["load", "A", "B", "C", "D", "E", "F"]
        for phase in store["phases"]:
            assert set(phase) == PHASE_FIELDS
            assert phase["verify"]["mismatches"] == 0, phase["verify"]["examples"]
            expected_ops = {"insert"} if phase["phase"] == "load" else WORKLOAD_OPS[phase["phase"]]
            assert set(phase["ops"]) == expected_ops
            assert phase["operations"] == (2000 if phase["phase"] == "load" else 3000)
            assert sum(op["count"] for op in phase["ops"].values()) == phase["operations"]
            for op in phase["ops"].values():
                assert set(op) == OP_FIELDS
                assert 0 < op["p50_us"] <= op["p95_us"] <= op["p99_us"] <= op["p999_us"] <= op["max_us"]
            if phase["phase"] != "load":
                assert phase["verify"]["reads_checked"] > 0


DISKS: dict[str, dict] = {}


class DictStore:
    """A correct in-memory store (the control for the stale one); its data
    outlives close() like a real store's, keyed by path."""

    name = "dict"
    concurrency_model = "single"

    @classmethod
    def unavailable(cls):
        return None

    @classmethod
    def open(cls, path, config):
        return cls(DISKS.setdefault(path, {}))

    def __init__(self, data):
        self.data = data

    def put(self, key, value):
        self.data[key] = value

    def get(self, key):
        return self.data.get(key)

    def scan(self, start, count):
        return [(k, self.data[k]) for k in sorted(k for k in self.data if k >= start)[:count]]

    def close(self):
        pass

    def settings(self):
        return {"durability": "none (memory)"}


class StaleStore(DictStore):
    """Broken on purpose: keeps the first value of a key, ignoring updates."""

    name = "stale"

    def put(self, key, value):
        self.data.setdefault(key, value)


def run_small(adapter, tmp_path, workload="A", clients=4, **store):
    config = RunConfig(records=500, operations=2000, verify=True, progress="never",
                       store=StoreConfig(clients=clients, **store))
    bench = StoreBenchmark(adapter, config, KeySpace(), ValueFactory(100), log=lambda line: None)
    return bench.run(str(tmp_path / adapter.name), [STANDARD[workload]])


def test_verifier_passes_a_correct_store(tmp_path):
    result = run_small(DictStore, tmp_path)
    assert result.status == "ok"
    assert result.phases[1].verify["reads_checked"] > 500
    assert result.phases[1].verify["mismatches"] == 0


def test_verifier_catches_a_store_returning_stale_values(tmp_path):
    result = run_small(StaleStore, tmp_path)
    verify = result.phases[1].verify
    assert verify["mismatches"] > 100
    assert any("stale version 0" in e for e in verify["examples"])


def test_command_fails_when_reads_mismatch(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(stores.ADAPTERS, "stale", (__name__, "StaleStore"))
    code = main(["--stores", "stale", "--records", "300", "--operations", "1000", "--workloads", "A",
                 "--verify", "--no-plots", "--progress", "never", "--results", str(tmp_path / "r")])
    assert code == 1
    assert "did not return the last value written" in capsys.readouterr().out


def test_cold_mode_drops_the_page_cache_before_each_workload(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("perf.driver.drop_page_cache", lambda: calls.append(1) or (False, "could not drop"))
    config = RunConfig(records=300, operations=300, verify=True, progress="never",
                       store=StoreConfig(clients=2, cold=True, cache_bytes=1 << 20))
    bench = StoreBenchmark(DictStore, config, KeySpace(), ValueFactory(100), log=lambda line: None)
    result = bench.run(str(tmp_path / "d"), [STANDARD["B"], STANDARD["C"]])
    assert len(calls) == 2
    assert [p.note for p in result.phases] == ["", "could not drop", "could not drop"]


def test_hedge_is_skipped_with_a_reason_when_absent_or_incomplete(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hedge_store, "hedge", types.SimpleNamespace(open=lambda *a, **k: None))
    assert hedge_store.HedgeStore.unavailable() == "hedge is incomplete: no hedge.gather"
    monkeypatch.setattr(hedge_store, "hedge", None)
    monkeypatch.setattr(hedge_store, "_IMPORT_ERROR", "hedge cannot be imported (test)")
    code = main(["--stores", "hedge", "--records", "100", "--operations", "100", "--no-plots",
                 "--progress", "never", "--results", str(tmp_path / "r")])
    assert code == 0
    assert "skipping hedge: hedge cannot be imported (test)" in capsys.readouterr().err
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["stores"][0]["status"] == "skipped"


class FakeAio:
    def __init__(self, data):
        self.data = data

    async def put(self, key, value, sync=False):
        await asyncio.sleep(0)
        self.data[key] = value

    async def get(self, key):
        await asyncio.sleep(0)
        return self.data.get(key)

    def scan(self, start, end=None, *, limit=None):
        return FakeScan(self._scan(start, end, limit))

    async def _scan(self, start, end, limit):
        n = 0
        for key in sorted(self.data):
            if n == limit:
                return
            if key >= start and (end is None or key < end):
                await asyncio.sleep(0)
                yield key, self.data[key]
                n += 1


class FakeScan:
    """What hedge's db.aio.scan returns, as far as the adapter uses it."""

    def __init__(self, items):
        self._items = items

    def __aiter__(self):
        return self._items

    async def to_list(self):
        return [item async for item in self._items]


class FakeDB:
    def __init__(self, options):
        self.options = options
        self.aio = FakeAio(FAKE_DISK.setdefault("data", {}))

    def run(self, coro):
        return asyncio.run(coro)

    def stats(self):
        return {"layout": {"foreground": [0]}, "io_method": "sync"}

    def close(self):
        pass


FAKE_DISK: dict = {}


def test_hedge_adapter_runs_clients_as_coroutines(tmp_path, monkeypatch):
    opened = []
    fake = types.SimpleNamespace(open=lambda path, **options: opened.append(options) or FakeDB(options),
                                 gather=asyncio.gather, __version__="fake")
    monkeypatch.setattr(hedge_store, "hedge", fake)
    monkeypatch.setitem(FAKE_DISK, "data", {})
    for workload in ("A", "E"):
        result = run_small(hedge_store.HedgeStore, tmp_path / workload, workload, clients=16,
                           cold=True, cache_bytes=1 << 20)
        assert result.status == "ok", result.reason
        verify = result.phases[1].verify
        assert verify["reads_checked"] > 0 and verify["mismatches"] == 0, verify["examples"]
    assert opened[0]["direct_io"] is False   # load phase
    assert opened[1]["direct_io"] is True and opened[1]["block_cache_bytes"] == 1 << 20
    assert result.settings["layout"] == {"foreground": [0]}
    assert "io_method=sync" in result.settings["io"]


def test_seconds_bound_a_workload(tmp_path):
    config = RunConfig(records=200, operations=10 ** 8, seconds=0.3, progress="never",
                       store=StoreConfig(clients=4))
    bench = StoreBenchmark(DictStore, config, KeySpace(), ValueFactory(100), log=lambda line: None)
    result = bench.run(str(tmp_path / "d"), [STANDARD["C"]])
    phase = result.phases[1]
    assert 0 < phase.operations < 10 ** 8
    assert 0.3 <= phase.elapsed_s < 3.0


def test_the_peers_background_bytes_come_from_their_stats_text():
    from perf.stores.plyvel_store import leveldb_written_bytes
    from perf.stores.rocksdict_store import cumulative_compaction_bytes

    rocks = ("Flush(GB): cumulative 0.123, interval 0.123\n"
             "Cumulative compaction: 0.52 GB write, 22.63 MB/s write, 0.00 GB read, 0.00 MB/s read, 1.4 seconds\n"
             "Interval compaction: 0.12 GB write, 23.01 MB/s write\n")
    assert cumulative_compaction_bytes(rocks) == int(0.52 * (1 << 30))
    assert cumulative_compaction_bytes("no stats") is None
    level = ("                               Compactions\n"
             "Level  Files Size(MB) Time(sec) Read(MB) Write(MB)\n"
             "--------------------------------------------------\n"
             "  0        2        8         2        0        87\n"
             "  1       25       48         2      102       105\n")
    assert leveldb_written_bytes(level) == (87 + 105) << 20
    assert leveldb_written_bytes("") is None


def test_load_amplification_is_reported_per_store(tmp_path, capsys):
    results = tmp_path / "results"
    code = main(["--stores", "hedge,sqlite", "--records", "3000", "--operations", "100", "--workloads", "C",
                 "--clients", "4", "--progress", "never", "--no-plots", "--results", str(results)])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads((results / "results.json").read_text())
    hedge_result, sqlite_result = data["stores"]
    logical = hedge_result["logical_bytes_loaded"]
    assert logical > 3000 * 1000
    assert hedge_result["space_amplification"] == pytest.approx(hedge_result["disk_bytes_after_load"] / logical,
                                                                abs=1e-3)
    assert hedge_result["write_amplification"] == pytest.approx(
        hedge_result["background_bytes_after_load"] / logical, abs=1e-3)
    assert sqlite_result["write_amplification"] is None           # sqlite does not say
    assert sqlite_result["space_amplification"] > 0
    assert "load amplification: space" in out and "write n/a" in out
