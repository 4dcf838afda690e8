"""benchmarks/land.py: what a landing commits besides the plan's results directory."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import types
from pathlib import Path

RENDERER = """import pathlib
root = pathlib.Path(__file__).resolve().parents[1]
for doc in ("README.md", "docs/results.md", "docs/provenance.md"):
    p = root / doc
    if p.exists():
        p.write_text(p.read_text().replace("figure 1", "figure 2"))
"""


def _git(base: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", *args], cwd=base, check=True, capture_output=True, text=True, env=env).stdout


def _checkout(tmp_path: Path, renderer: str | None) -> tuple[Path, types.SimpleNamespace]:
    """A git checkout holding a plan's results directory with one new cell, README.md and docs/results.md
    tracked (their figure from the results), docs/provenance.md absent, and its own renderer (or none)."""
    base = tmp_path / "checkout"
    (base / "docs").mkdir(parents=True)
    (base / "README.md").write_text("intro\nfigure 1\n")
    (base / "docs" / "results.md").write_text("readings\nfigure 1\n")
    if renderer is not None:
        (base / "benchmarks").mkdir()
        (base / "benchmarks" / "render_docs.py").write_text(renderer)
    _git(base, "init", "-q")
    _git(base, "add", "-A")
    _git(base, "commit", "-q", "-m", "start")
    results = base / "benchmarks" / "results" / "baselines"
    (results / "cells" / "Env-v0" / "bpd").mkdir(parents=True)
    (results / "cells" / "Env-v0" / "bpd" / "seed0.json").write_text('{"eval": {"return_mean": 1.0}}')
    plan = types.SimpleNamespace(name="baselines", path=base / "plan.yaml", runs=base / "runs", base=base,
                                 results_dir=results)
    return base, plan


def _python(tmp_path: Path) -> str:
    """A python for land() that runs the renderer and skips the table script (the results are planted)."""
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\ncase "$1" in *render_docs.py) exec {sys.executable} "$@";; *) exit 0;; esac\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return str(fake)


def test_a_landing_commits_the_rendered_documents_but_never_a_hand_edit_in_progress(benchmark_script, tmp_path):
    """The checkout's own renderer rewrites its documents; README.md (clean before) lands with the cell,
    docs/results.md (a hand edit in progress) is rendered but stays uncommitted, docs/provenance.md
    (not there) is no error."""
    land = benchmark_script("land")
    base, plan = _checkout(tmp_path, RENDERER)
    (base / "docs" / "results.md").write_text("readings, half edited\nfigure 1\n")
    msg = land.land(plan, _python(tmp_path))
    assert msg and msg.startswith("Baselines: Env-v0/bpd/seed0")
    files = _git(base, "show", "--name-only", "--format=", "HEAD").split()
    assert "README.md" in files and "docs/results.md" not in files
    assert _git(base, "show", "HEAD:README.md") == "intro\nfigure 2\n"
    assert _git(base, "show", "HEAD:docs/results.md") == "readings\nfigure 1\n"
    assert (base / "docs" / "results.md").read_text() == "readings, half edited\nfigure 2\n"


def test_a_landing_without_a_renderer_or_with_a_failing_one_still_lands_the_cells(benchmark_script, tmp_path):
    land = benchmark_script("land")
    for renderer in (None, "raise SystemExit('template error')\n"):
        t = tmp_path / ("none" if renderer is None else "failing")
        base, plan = _checkout(t, renderer)
        assert land.land(plan, _python(t))
        files = _git(base, "show", "--name-only", "--format=", "HEAD").split()
        assert files == ["benchmarks/results/baselines/cells/Env-v0/bpd/seed0.json"]
