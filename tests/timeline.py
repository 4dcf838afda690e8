"""Where the suite's wall time goes: each test's start and end, per xdist worker (a pytest plugin, off by default).

    BPD_TEST_TIMELINE=DIR .venv/bin/python -m pytest -n 4 --dist load --maxschedchunk 1 -p tests.timeline
    python tests/timeline.py DIR        # when each worker ended, and the tests of 20 s or more on each

Each worker appends "S|E <unix time> <node id>" lines to DIR/timeline-<worker>.log. This is how stop 71 found that
xdist's first hand-out had sent every long test of test_experiment.py to one worker (the order in tests/conftest.py).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

_out = None


def _log(kind: str, nodeid: str) -> None:
    global _out
    where = os.environ.get("BPD_TEST_TIMELINE")
    if not where:
        return
    if _out is None:
        Path(where).mkdir(parents=True, exist_ok=True)
        _out = open(Path(where) / f"timeline-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.log", "a", buffering=1)
    _out.write(f"{kind} {time.time():.2f} {nodeid}\n")


def pytest_runtest_logstart(nodeid, location):
    _log("S", nodeid)


def pytest_runtest_logfinish(nodeid, location):
    _log("E", nodeid)


def summary(where: Path, longer: float = 20.0) -> list[str]:
    """Per worker: when it ended (seconds from the first start), its tests' summed time, and its long tests."""
    runs: dict[str, list[tuple[float, float, str]]] = {}
    for f in sorted(where.glob("timeline-gw*.log")):
        started: dict[str, float] = {}
        for line in f.read_text().splitlines():
            kind, t, node = line.split(" ", 2)
            if kind == "S":
                started[node] = float(t)
            elif node in started:
                runs.setdefault(f.stem.split("-", 1)[1], []).append((started.pop(node), float(t), node))
    if not runs:
        return [f"{where}: no worker timelines (timeline-gw*.log)"]
    t0 = min(s for v in runs.values() for s, _, _ in v)
    out = []
    for w, v in sorted(runs.items()):
        v.sort()
        out.append(f"{w}: ended at {v[-1][1] - t0:.0f} s, {len(v)} tests, {sum(e - s for s, e, _ in v):.0f} s in tests")
        out += [f"  {s - t0:7.0f} {e - s:7.1f} s  {n}" for s, e, n in v if e - s >= longer]
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python tests/timeline.py DIR")
    print("\n".join(summary(Path(sys.argv[1]))))
