"""The public API's type hints, as a type checker sees them from a user's
program: tests/typing/uses_the_api.py type-checks under ``mypy --strict``
(its assert_type calls pin what each call returns), and every line of
tests/typing/misuses_the_api.py marked ``# error`` is flagged, and no other.
hedge/py.typed marks the package as typed; tests/io/test_packaging.py checks
that the wheel carries it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TYPING = ROOT / "tests" / "typing"

pytestmark = pytest.mark.timeout(300)


def mypy(path: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy", reason="mypy is a test dependency: run `make setup`")
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
                           "--no-incremental", "--cache-dir", os.devnull, str(path)],
                          capture_output=True, text=True, cwd=ROOT)


def test_a_program_using_the_api_type_checks_strictly():
    proc = mypy(TYPING / "uses_the_api.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_misuses_of_the_api_are_flagged():
    proc = mypy(TYPING / "misuses_the_api.py")
    flagged = {int(m.group(1)) for m in re.finditer(r"misuses_the_api\.py:(\d+): error", proc.stdout)}
    lines = (TYPING / "misuses_the_api.py").read_text().splitlines()
    expected = {n for n, line in enumerate(lines, 1) if "# error" in line}
    assert expected and flagged == expected, proc.stdout


def test_the_package_is_marked_typed():
    assert (ROOT / "hedge" / "py.typed").is_file()
    assert re.search(r'hedge\s*=\s*\[\s*"py\.typed"\s*\]', (ROOT / "pyproject.toml").read_text())
