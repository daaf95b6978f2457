"""A/B runs of two trees of hedge: another revision's ``hedge/``
exported beside this one, and a benchmark's ``child(argv)`` run in a
subprocess that imports one tree's ``hedge`` (``perf.lsm_micro
--against``, ``perf.scan_mix_bench --against``)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile


def export_tree(rev: str, repo: str) -> str:
    """``hedge/`` of ``rev`` in a temporary directory, with its own build of
    the I/O extension: the LSM code calls the C kernels in it, which change
    with the code (docs/design.md, "C kernels").  When that build fails (no
    liburing, say), this tree's built extension is copied in instead, and a
    line on stderr says so."""
    tmp = tempfile.mkdtemp(prefix="hedge-ab-")
    archive = subprocess.run(["git", "-C", repo, "archive", rev, "hedge"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    build = subprocess.run([sys.executable, os.path.join("hedge", "io", "_build.py")], cwd=tmp,
                           capture_output=True, text=True)
    if build.returncode == 0:
        return tmp
    last = (build.stderr.strip().splitlines() or ["no output"])[-1]
    print(f"{rev}: its I/O extension did not build ({last}); "
          "using this tree's, whose kernels may not match its code", file=sys.stderr)
    io_dir = os.path.join(repo, "hedge", "io")
    for name in os.listdir(io_dir):
        if name.startswith("_uring") and name.endswith(".so"):
            shutil.copy(os.path.join(io_dir, name), os.path.join(tmp, "hedge", "io", name))
    return tmp


def run_child(module: str, tree: str, repo: str, argv: list[str], env: dict | None = None,
              prefix: list[str] | None = None) -> str:
    """The standard output of ``module.child(argv)`` run in a subprocess
    that imports ``hedge`` from ``tree`` and everything else (``perf``)
    from ``repo``; ``prefix`` runs it under another command (valgrind),
    ``env`` adds to the environment.  The subprocess starts in ``tree``: a
    ``python -c`` puts its working directory first on its path, so started
    in the repository it would import the repository's ``hedge``."""
    child_env = dict(os.environ, **(env or {}))
    child_env["PYTHONPATH"] = os.pathsep.join([tree, repo])
    cmd = (prefix or []) + [sys.executable, "-c",
                            f"import sys; from {module} import child; sys.exit(child(sys.argv[1:]))", *argv]
    return subprocess.run(cmd, env=child_env, cwd=tree, check=True, capture_output=True, text=True).stdout
