# hedge: set-up, tests and benchmarks.  Every target works on a fresh clone:
# it finds a Python >= 3.12, makes .venv, installs liburing-dev when missing
# (as root), and installs the package.  Second runs reinstall nothing.

PYTHON  ?= $(shell scripts/find-python)
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.hedge-installed
BENCH_STAMP := $(VENV)/.hedge-bench-installed
SUDO    := $(shell [ "$$(id -u)" = 0 ] && echo "" || echo "sudo")

.PHONY: all setup setup-bench test test-soak bench ring-bench clean liburing fio

all: setup

$(VPY):
	@test -n "$(PYTHON)" || { echo "error: no Python >= 3.12 found" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel cffi

liburing:
	@scripts/ensure-system-packages liburing-dev || echo "hedge: going on without liburing; the io_uring method will be unavailable"

fio:
	@scripts/ensure-system-packages fio || true

$(STAMP): $(VPY) pyproject.toml setup.py hedge/io/_build.py hedge/io/_build_probe.py | liburing
	$(VPY) -m pip install -q -e '.[test]'
	$(VPY) -c "import hedge.io.backend as b; print('hedge: io methods available:', ', '.join(b.available_methods()))"
	@touch $@

$(BENCH_STAMP): $(STAMP)
	$(VPY) -m pip install -q -e '.[test,bench]'
	@touch $@

setup: $(STAMP)

setup-bench: $(BENCH_STAMP) fio

test: setup
	$(VPY) -m pytest -q -ra tests

# The long crash/soak runs (minutes to hours).
test-soak: setup
	HEDGE_SOAK=1 $(VPY) -m pytest -q -ra tests

bench: setup-bench
	$(VPY) -m perf.ring_bench

ring-bench: setup fio
	$(VPY) -m perf.ring_bench

clean:
	rm -rf $(VENV) build *.egg-info hedge/io/_uring*.so hedge/io/_uring.c
