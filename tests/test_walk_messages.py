"""What `bpd evaluate` and the loaders say, as helpers walking the tool met it: a swing-up's success rate in the
summary, a baseline's student named for what it is, a directory given for a teacher or dataset file named as one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bpd.errors import BpdError
from bpd_app.cli import main
from bpd_app.evaluate import EvaluateConfig, run_evaluate
from tests.conftest import ROOT
from training.envs import Episodes, rollouts

TEACHERS = ROOT / "benchmarks" / "teachers"
ROTARY = "firmware_host.rig:bpd/rotary-pendulum-v0"  # a swing-up rig's nominal environment: it judges each episode


def test_a_summary_counts_the_episodes_that_met_the_envs_success_rule_and_nothing_where_it_has_none():
    ep = Episodes([1.0, 2.0, 3.0], [5, 5, 5], [False, False, False], 7, [True, False, True])
    s = ep.summary()
    assert (s["successes"], s["success_rate"], s["success"]) == (2, 2 / 3, [True, False, True])
    plain = Episodes([1.0, 2.0], [5, 5], [False, True], 7).summary()
    assert not {"successes", "success_rate", "success"} & set(plain)


def test_evaluate_reports_a_swing_ups_success_rate():
    """Known answers: the committed rotary teacher swings up and holds on the nominal rig's episodes 0 and 1 (the
    rotary benchmark's 100 %); a policy that never pushes leaves the pendulum hanging, 0 of 2. evaluate printed
    neither: its summary carried returns alone although the env judges every episode's end."""
    r = run_evaluate(EvaluateConfig(model=str(TEACHERS / "rotary-pendulum.npz"), env=ROTARY, episodes=2))
    assert (r["successes"], r["success_rate"], r["success"]) == (2, 1.0, [True, True])
    still = rollouts(ROTARY, lambda obs: np.zeros(1, np.float32), 2, 0).summary()
    assert (still["successes"], still["success_rate"]) == (0, 0.0) and still["early_terminations"] == 0
    ip = run_evaluate(EvaluateConfig(model=str(TEACHERS / "InvertedPendulum-v5.npz"), episodes=1))
    assert "success_rate" not in ip and "successes" not in ip  # no rule of its own: no rate made up


def test_evaluate_json_and_table_carry_the_success_rate(capsys):
    assert main(["evaluate", str(TEACHERS / "rotary-pendulum.npz"), "--env", ROTARY, "--episodes", "1",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["successes"], r["success_rate"]) == (1, 1.0)
    assert main(["evaluate", str(TEACHERS / "rotary-pendulum.npz"), "--env", ROTARY, "--episodes", "1"]) == 0
    lines = [line.split(":", 1) for line in capsys.readouterr().out.splitlines()]
    table = {k.strip(): v.strip() for k, v in lines}
    assert (table["successes"], table["success_rate"]) == ("1", "1")


def test_evaluate_names_a_baselines_student_for_what_it_is(tmp_path, capsys):
    """`bpd baseline train`'s policy.npz is in the teacher format; evaluate called it 'kind: teacher'. Its file
    records the command that made it: a baseline student, the run directory and the file alike; a teacher stays
    one."""
    t = str(TEACHERS / "InvertedPendulum-v5.npz")
    assert main(["collect", "--teacher", t, "--out", str(tmp_path / "d.npz"), "--steps", "200",
                 "--no-progress"]) == 0
    assert main(["baseline", "train", "--method", "mse", "--teacher", t, "--dataset", str(tmp_path / "d.npz"),
                 "--out", str(tmp_path / "b"), "--steps", "4", "--eval-every", "4", "--eval-episodes", "1",
                 "--checkpoint-every", "4", "--hidden", "8", "--no-progress"]) == 0
    capsys.readouterr()
    for model in (tmp_path / "b", tmp_path / "b" / "policy.npz"):
        r = run_evaluate(EvaluateConfig(model=str(model), episodes=1))
        assert r["kind"] == "baseline student" and r["algo"] == "distilled mse"
    assert run_evaluate(EvaluateConfig(model=t, episodes=1))["kind"] == "teacher"


def test_an_exports_size_mismatch_names_the_c_kernel():
    """`bpd evaluate EXPORT --env OTHER` said 'the c maps 4 observations ...'."""
    from tests.conftest import pendulum_export

    with pytest.raises(BpdError, match=r"export: the C kernel maps 4 observations to 1 actions, Pendulum-v1 has 3"):
        run_evaluate(EvaluateConfig(model=str(pendulum_export()), env="Pendulum-v1", episodes=1))
    with pytest.raises(BpdError, match=r"policy.onnx: the ONNX policy maps 4 observations to 1 actions"):
        run_evaluate(EvaluateConfig(model=str(pendulum_export() / "policy.onnx"), env="Pendulum-v1", episodes=1))


@pytest.mark.parametrize("argv, says", [
    (["collect", "--teacher", "{d}", "--out", "{t}/d.npz"], "{d}: a directory, not a teacher file; give the "
     "teacher's .npz (the file `bpd teacher train` or `bpd teacher import` writes)"),
    (["distill", "--teacher", "{d}", "--dataset", "{t}/none.npz", "--out", "{t}/r"], "{d}: a directory, not a "
     "teacher file"),
    (["export", "{ip}", "--teacher", "{d}", "--out", "{t}/e"], "{d}: a directory, not a teacher file"),
    (["distill", "--teacher", "{ip}", "--dataset", "{d}", "--out", "{t}/r"],
     "{d}: a directory, expected a bpd-dataset file"),
    (["teacher", "import", "{d}", "--env", "InvertedPendulum-v5", "--out", "{t}/t.npz"],
     "{d}: a directory, not a stable-baselines3 model; give the .zip its model.save wrote"),
    (["export", "{ip}", "--dataset", "{d}", "--out", "{t}/e"], "{d}: a directory, not a dataset file (--dataset): "
     "give the .npz `bpd collect` writes, or minari:ID"),
    (["compress", "--teacher", "{d}", "--dataset", "{d}", "--out", "{t}/c"], "{d}: a directory, not a teacher file "
     "(--teacher)"),
    (["compress", "--teacher", "{ip}", "--dataset", "{d}", "--out", "{t}/c"], "{d}: a directory, not a dataset file "
     "(--dataset)"),
])
def test_a_directory_given_for_a_file_is_named_as_one(tmp_path, capsys, argv, says):
    """A directory (a run's, an export's) given where a teacher, dataset or stable-baselines3 file goes was
    'DIR: no such file', though it is there."""
    from tests.conftest import pendulum_export

    d = pendulum_export()  # an export directory: the one `bpd export` wrote, given for its teacher
    fill = {"d": str(d), "t": str(tmp_path), "ip": str(TEACHERS / "InvertedPendulum-v5.npz")}
    assert main([a.format(**fill) for a in argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bpd: error: ") and says.format(**fill) in err[0], err
    assert not any(tmp_path.iterdir())


def test_building_a_mujoco_env_says_nothing_and_leaves_no_log_file(tmp_path, monkeypatch, capfd):
    """HalfCheetah-v5's XML makes MuJoCo warn that 'settotalmass' is deprecated at every build: it printed the
    warning to stderr (an error after it was no longer one line) and left MUJOCO_LOG.TXT in the working directory.
    A warning while simulating (an unstable step) is still said, as a Python warning."""
    import math

    import mujoco

    from training.envs import make_env

    monkeypatch.chdir(tmp_path)
    make_env("HalfCheetah-v5").close()
    assert capfd.readouterr().err == "" and not any(tmp_path.iterdir())
    m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><body><joint type="slide"/><geom size="0.1"/></body>'
                                       "</worldbody></mujoco>")
    d = mujoco.MjData(m)
    d.qvel[0] = math.nan
    with pytest.warns(RuntimeWarning, match="MuJoCo: Nan, Inf or huge value in QVEL"):
        mujoco.mj_step(m, d)
    assert not any(tmp_path.iterdir())
