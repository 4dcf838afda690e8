"""benchmarks/tail_probe.py: the fall rate's interval and its one-line errors."""

import pytest

from tests.conftest import ROOT


def test_wilson_interval_has_its_closed_forms(benchmark_script):
    tp = benchmark_script("tail_probe")
    z2 = 1.96 ** 2
    assert tp.wilson(0, 30) == (0.0, pytest.approx(z2 / (30 + z2)))  # no fall in 30: the upper end is z^2/(n+z^2)
    lo, hi = tp.wilson(1, 30)
    lo2, hi2 = tp.wilson(29, 30)
    assert lo == pytest.approx(1 - hi2) and hi == pytest.approx(1 - lo2)  # symmetric in falls and clean episodes
    assert lo < 1 / 30 < hi and hi == pytest.approx(0.1667, abs=1e-4)
    assert tp.wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("args, message", [
    (["--env", "Nope-v0", "--seed", "0"], "no environment Nope-v0"),
    (["--env", "HalfCheetah-v5", "--seed", "0", "--labels", "nope"], "no method labelled 'nope'"),
    (["--env", "HalfCheetah-v5", "--seed", "0", "--episodes", "0"], "--episodes must be at least 1"),
    (["--env", "HalfCheetah-v5", "--seed", "0"], "HalfCheetah-v5 seed 0: no finished cell in"),  # before any episode
    (["--env", "HalfCheetah-v5", "--seed", "0", "--labels", "bpd"], "no student in"),
])
def test_bad_arguments_are_one_line_errors(benchmark_script, tmp_path, capsys, args, message):
    tp = benchmark_script("tail_probe")
    rc = tp.main([str(ROOT / "benchmarks" / "plans" / "delivery.yaml"), *args, "--runs", str(tmp_path),
                  "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bad_episodes_hold_the_teacher_and_its_students_to_one_threshold(benchmark_script):
    tp = benchmark_script("tail_probe")
    returns, ended = [6000.0, 2999.0, 3000.0, -200.0, 5000.0], [False, False, False, False, True]
    # under half of 6000 (3000 itself is not), or ended early whatever its return: 2999, -200 and the early end
    assert tp.bad_episodes(returns, ended, 6000.0, 0.5) == 3
    assert tp.bad_episodes(returns, [False] * 5, 6000.0, 0.5) == 2
    assert tp.bad_episodes(returns, [False] * 5, 6000.0, 0.0) == 1  # a share of 0: the negative return alone
