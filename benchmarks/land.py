"""Commit each finished cell's summary as it lands, so that a session's end loses at most the cells in flight.

    python benchmarks/land.py benchmarks/plans/benchmark.yaml benchmarks/plans/baselines.yaml ... [--every 300] [--once]

Every --every seconds, for each plan whose run root holds a result.json newer than the last landing, it
regenerates the plan's committed results (`benchmarks/<plan name>_table.py` where the plan has its own
table script, else `bpd experiment table`) and commits that results directory alone, named by the cells
that landed ("Baselines: HalfCheetah-v5/rusu-mse/seed1 4243.3 (1984 nonzero)"), with the documents whose
figures come from results files rendered again (that checkout's benchmarks/render_docs.py) in the same commit:
those without uncommitted edits (a hand edit in progress is never committed under a cell's name). A render that
fails is reported and the cells land without it. Restored cells change no committed file, so they make no
commit. It commits in the checkout that holds each plan (run it on main); stop it with SIGSTOP while editing
that checkout's results by hand and SIGCONT after.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("docs/results.md", "docs/provenance.md", "README.md")  # benchmarks/render_docs.py's outputs
sys.path.insert(0, str(ROOT))

from bpd.errors import BpdError  # noqa: E402
from bpd.io import read_json  # noqa: E402
from bpd_app.experiment.plan import Plan, load_plan  # noqa: E402


def _newest_result(runs: Path) -> float:
    return max((p.stat().st_mtime for p in runs.glob("*/*/seed*/result.json")), default=0.0)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _describe(path: Path) -> str:
    res = read_json(path, "cell summary")
    ret = (res.get("eval") or {}).get("return_mean")
    nz = res.get("params_nonzero")
    return " ".join(x for x in [f"{ret:.1f}" if ret is not None else "", f"({nz} nonzero)" if nz else ""] if x)


def land(plan: Plan, python: str) -> str | None:
    """Regenerate the plan's results and commit them if a cell summary changed; the commit message or None."""
    script = ROOT / "benchmarks" / f"{plan.name}_table.py"
    table = [python, str(script)] if script.exists() else [str(Path(python).with_name("bpd")), "experiment", "table"]
    subprocess.run([*table, str(plan.path), "--runs", str(plan.runs)], cwd=plan.base, check=True,
                   capture_output=True, text=True)
    rel = str(plan.results_dir.relative_to(plan.base))
    status = _git(plan.base, "status", "--porcelain", "--untracked-files=all", "--", rel)
    cells = sorted(c for line in status.splitlines() if "/cells/" in (c := line[3:].strip()) and c.endswith(".json"))
    if not cells:
        return None
    docs = _render_docs(plan.base, python)
    names = [" ".join(x for x in [c.split("/cells/", 1)[1].removesuffix(".json"), _describe(plan.base / c)] if x)
             for c in cells]
    msg = f"{plan.name.capitalize()}: " + "; ".join(names)
    _git(plan.base, "add", "--", rel)
    _git(plan.base, "commit", "-q", "-m", msg, "--", rel, *docs)
    return msg


def _render_docs(base: Path, python: str) -> list[str]:
    """Render the documents whose figures come from results files in the checkout base (with its own
    renderer, which writes its own checkout); the ones to commit with the cells: tracked there and without
    uncommitted edits before the render. None where base has no renderer or the render fails (said)."""
    renderer = base / "benchmarks" / "render_docs.py"
    if not renderer.is_file():
        return []
    tracked = set(_git(base, "ls-files", "--", *DOCS).splitlines())
    edited = {line[3:] for line in _git(base, "status", "--porcelain", "--", *DOCS).splitlines()}
    p = subprocess.run([python, str(renderer)], cwd=base, capture_output=True, text=True)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
        print(f"{time.strftime('%H:%M:%S')} {base}: documents not rendered ({last}); the cells land without them",
              flush=True)
        return []
    return [d for d in DOCS if d in tracked and d not in edited]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plans", nargs="+", type=Path)
    ap.add_argument("--runs-root", type=Path, default=None,
                    help="directory holding each plan's run root as <root>/<plan name> (default: as for the runner)")
    ap.add_argument("--every", type=float, default=300.0, help="seconds between looks")
    ap.add_argument("--once", action="store_true", help="look once and exit")
    a = ap.parse_args()
    seen: dict[Path, float] = {}
    while True:
        failed = False
        for p in a.plans:
            try:
                plan = load_plan(p)
                if a.runs_root:
                    plan.runs = a.runs_root / plan.name
                newest = _newest_result(plan.runs)
                if newest <= seen.get(p, -1.0):
                    continue
                msg = land(plan, sys.executable)
                seen[p] = newest
                if msg:
                    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)
            except (BpdError, OSError, subprocess.CalledProcessError) as e:
                failed = True
                detail = (getattr(e, "stderr", None) or "").strip().splitlines()[-1:]
                print(f"{time.strftime('%H:%M:%S')} {e}{': ' + detail[0] if detail else ''}", flush=True)
        if a.once:
            return 1 if failed else 0
        time.sleep(a.every)


if __name__ == "__main__":
    sys.exit(main())
