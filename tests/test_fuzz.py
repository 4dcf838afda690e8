"""A short libFuzzer run (ASan + UBSan) of the parser and command harnesses from the committed seed
corpora: no finding, and the seeds reach past the framing into the messages and the state machine.
The long run is benchmarks/fuzz_benchmark.py."""

import shutil

import pytest

from firmware_host.measure.fuzz import FUZZ, HARNESSES, run

pytestmark = pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed (make system-deps)")

# covered edges the seed corpora alone reach (a floor: fuzzing only adds)
FLOOR = {"parser": 80, "commands": 150}


@pytest.mark.parametrize("name", list(HARNESSES))
def test_short_fuzz_run(tmp_path, name):
    r = run(name, 20000, tmp_path)
    assert r.finding is None, r.finding
    assert r.executions == 20000 and r.coverage >= FLOOR[name]


def test_corpus_is_small_and_committed():
    files = [f for f in (FUZZ / "corpus").rglob("*") if f.is_file()]
    assert {f.parent.name for f in files} == set(HARNESSES)
    assert sum(f.stat().st_size for f in files) < 64 * 1024
