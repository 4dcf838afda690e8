"""What a new control engineer meets walking walkthrough 1 with a real stable-baselines3 zip: the lines `bpd
collect` prints, `bpd evaluate` handed the zip itself, and `bpd evaluate ... | head`."""

from __future__ import annotations

import numpy as np
import pytest

from bpd.errors import BpdError


def _ds(terminals: list[float], truncations: list[float], episodes: int, mean: float | None):
    from training.collect import Dataset

    n = len(terminals)
    z = np.zeros((n, 1), np.float32)
    return Dataset(meta={"episodes": episodes, "episode_return_mean": mean}, observations=z, actions=z,
                   teacher_actions=z, rewards=z[:, 0], next_observations=z,
                   terminals=np.array(terminals, np.float32), truncations=np.array(truncations, np.float32),
                   obs_mean=z[0], obs_std=z[0] + 1, action_low=z[0] - 1, action_high=z[0] + 1)


def test_collect_says_how_many_whole_episodes_and_their_mean_return_rounded():
    """450 Pendulum steps: two whole episodes of 200 and one cut short by --steps (its truncation, forced at the
    end), their mean return to one decimal; 5 steps: no whole episode, no mean (it printed 'None')."""
    from training.cli import collect_line

    ends = [0.0] * 450
    ends[199] = ends[399] = ends[449] = 1.0
    assert collect_line("d.npz", _ds([0.0] * 450, ends, 2, -1469.6215693540494)) == (
        "dataset: d.npz  450 steps, 2 whole episodes and one cut short by --steps, mean return -1469.6")
    ends = [0.0] * 400
    ends[199] = ends[399] = 1.0
    assert collect_line("d.npz", _ds([0.0] * 400, ends, 2, -1469.6)) == (
        "dataset: d.npz  400 steps, 2 whole episodes, mean return -1469.6")
    assert collect_line("bpd/p-v0", _ds([0.0] * 5, [0, 0, 0, 0, 1.0], 0, None)) == (
        "dataset: bpd/p-v0  5 steps, 0 whole episodes and one cut short by --steps")
    assert collect_line("d.npz", _ds([0, 1.0], [0, 0], 1, 12.0)) == (
        "dataset: d.npz  2 steps, 1 whole episode, mean return 12.0")


def test_evaluate_names_a_stable_baselines3_zip_and_the_import_it_needs(tmp_path):
    """A zip with SB3's `data` record and `policy.pth` is not read as a student (which said 'not a readable student
    file (RuntimeError)'): the error names the import; any other zip is still read as a student file."""
    import zipfile

    from bpd_app.evaluate import load_any

    z = tmp_path / "my_sac.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("data", "{}")
        f.writestr("policy.pth", b"")
    with pytest.raises(BpdError, match=r"my_sac.zip: a stable-baselines3 model; import it first \(bpd teacher "
                                       r"import .*my_sac.zip --env ENV --out teacher.npz\)"):
        load_any(z)
    other = tmp_path / "other.pt"
    with zipfile.ZipFile(other, "w") as f:
        f.writestr("archive/data.pkl", b"")
    with pytest.raises(BpdError, match="not a readable student file"):
        load_any(other)


def test_a_closed_pipe_ends_the_command_quietly_with_sigpipes_code(monkeypatch, capsys):
    """`bpd evaluate RUN | head -1`: the reader gone, bpd exits 141 (128 + SIGPIPE, as a shell expects) without the
    line 'bpd: error: Broken pipe'."""
    import argparse
    import signal

    import bpd_app.cli as cli

    def handler(ns):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli.os, "dup2", lambda a, b: None)  # pytest's captured stdout stays as it is
    with monkeypatch.context() as m:
        m.setattr(cli, "_stdout_gone", lambda: True)
        assert cli._handle(argparse.Namespace(handler=handler)) == 128 + signal.SIGPIPE
    assert capsys.readouterr().err == ""
    # another pipe broke (a subprocess the command wrote to), stdout fine: one line and exit 1, not silence
    assert cli._handle(argparse.Namespace(handler=handler)) == 1
    assert capsys.readouterr().err == "bpd: error: Broken pipe (a pipe to a process that ended)\n"
    # _stdout_gone on a real pipe: its reader open, then closed
    import os

    r, w = os.pipe()
    with open(w, "w") as out:
        monkeypatch.setattr(cli.sys, "stdout", out)
        assert not cli._stdout_gone()
        os.close(r)
        assert cli._stdout_gone()


def test_evaluates_table_shows_six_significant_digits_and_json_keeps_them_all():
    """The table a person reads (--json prints the figures unrounded): -1352.2325076502618 is -1352.23, a list of
    returns likewise, counts and names as they are."""
    import bpd_app.cli as cli

    r = {"return_mean": -1352.2325076502618, "returns": [-1127.0604504436117, -968.3565708825289], "episodes": 2,
         "lengths": [200, 200], "env_id": "Pendulum-v1", "randomize": None, "sparsity": 0.817451461727293}
    assert [cli._readable(v) for v in r.values()] == ["-1352.23", "[-1127.06, -968.357]", "2", "[200, 200]",
                                                      "Pendulum-v1", "None", "0.817451"]
