"""The robustness score (training/robustness.py) on cases whose answer is known by hand: a one-joint
MuJoCo rotor whose every action is recorded, and the gymnasium tasks' layouts."""

from __future__ import annotations

import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from bpd.errors import BpdError
from training.envs import make_env
from training.perturbations import ActionDelay, Push, TorqueNoise, TorqueResponse, VelocityNoise, velocity_entries
from training.robustness import (
    CATEGORIES,
    RobustnessGrid,
    apply_model_error,
    default_grid,
    robustness,
    scores,
    varied_env,
)

DT = 0.01
INERTIA = 0.1  # kg m^2 about the hinge
XML = f"""<mujoco>
  <option timestep="{DT}" gravity="0 0 0" integrator="Euler"/>
  <worldbody>
    <body name="rotor">
      <joint name="spin" type="hinge" axis="0 0 1" damping="0.02" frictionloss="0.05"/>
      <inertial pos="0 0 0" mass="2" diaginertia="{INERTIA} {INERTIA} {INERTIA}"/>
    </body>
  </worldbody>
  <actuator><motor joint="spin" gear="1" ctrllimited="true" ctrlrange="-1000 1000"/></actuator>
</mujoco>"""


class Rotor(gym.Env):
    """A free rotor on a hinge: observation [angle, rate], action a torque, every applied action kept.
    It judges its own episodes: a success unless an action beyond 50 N m arrived (the controllers
    below ask for 100 to fail on purpose)."""

    def __init__(self, steps: int = 20) -> None:
        self.model = mujoco.MjModel.from_xml_string(XML)
        self.data = mujoco.MjData(self.model)
        self.action_space = gym.spaces.Box(-1000.0, 1000.0, (1,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.dt = DT
        self.steps = steps
        self.received: list[float] = []

    def _obs(self) -> np.ndarray:
        return np.array([self.data.qpos[0], self.data.qvel[0]], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[0], self.data.qvel[0] = self.np_random.uniform(-0.1, 0.1, 2)
        mujoco.mj_forward(self.model, self.data)
        self.t, self.received, self.bad = 0, [], False
        return self._obs(), {}

    def step(self, action):
        a = float(np.asarray(action).reshape(-1)[0])
        self.received.append(a)
        self.bad |= abs(a) > 50
        self.data.ctrl[:] = a
        mujoco.mj_step(self.model, self.data)
        self.t += 1
        trunc = self.t >= self.steps
        return self._obs(), 1.0, False, trunc, ({"success": not self.bad} if trunc else {})


def grid(**kw) -> RobustnessGrid:
    block = {"period_s": DT, "damping": 0.1, "coulomb": 0.2, "velocity_noise": 0.5, "torque_noise": 1.1,
             "push": 3.0, "push_joint": "spin", "push_times_s": [0.05, 0.12], "push_duration_s": 0.03,
             "variations": 3} | kw
    return RobustnessGrid.from_dict(block)


def drive(env: gym.Env, actions: list[float], seed: int = 0) -> list[float]:
    env.reset(seed=seed)
    for a in actions:
        env.step(np.array([a], np.float32))
    return list(env.unwrapped.received)


@pytest.mark.parametrize("k", [0.1, 0.3, 0.7, 1.0])
def test_torque_response_to_a_step_is_one_minus_one_minus_k_to_the_n(k):
    got = drive(TorqueResponse(Rotor(), k), [1.0] * 10)
    want = [1 - (1 - k) ** n for n in range(1, 11)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_an_overshooting_response_stays_within_the_action_limits():
    # k = 2 from rest to 600: 1200 clipped at 1000, then 1000 + 2 (600 - 1000) = 200, then 1000 again
    got = drive(TorqueResponse(Rotor(), 2.0), [600.0] * 4)
    assert got == [1000.0, 200.0, 1000.0, 200.0]


@pytest.mark.parametrize("d", [0, 1, 3])
def test_a_delay_of_d_ticks_shifts_the_actions_by_d_after_rest(d):
    seq = [float(i + 1) for i in range(8)]
    got = drive(ActionDelay(Rotor(), d), seq)
    assert got == [0.0] * d + seq[: len(seq) - d]
    assert drive(ActionDelay(Rotor(), d), seq) == got  # the queue starts at rest again after a reset


def test_velocity_noise_has_the_stated_sigma_on_the_velocities_alone():
    sigma = 0.3
    env = VelocityNoise(Rotor(), [1], sigma)
    noise = []
    for ep in range(200):
        obs, _ = env.reset(seed=ep)
        for _ in range(20):
            d = env.unwrapped.data
            assert obs[0] == np.float32(d.qpos[0])  # the angle untouched
            noise.append(float(obs[1]) - float(np.float32(d.qvel[0])))
            obs, *_ = env.step(np.zeros(1, np.float32))
    noise = np.asarray(noise)  # 4000 draws: the sample sigma is within 5 % (4.5 of its standard errors)
    assert abs(noise.std() - sigma) < 0.05 * sigma and abs(noise.mean()) < 4 * sigma / math.sqrt(len(noise))
    # seeded by the reset: the same seed, the same noise
    a = env.reset(seed=3)[0]
    assert env.reset(seed=3)[0][1] == a[1]


def test_torque_noise_has_the_stated_sigma_in_action_units():
    env = TorqueNoise(Rotor(steps=4000), 2.0)
    got = np.asarray(drive(env, [5.0] * 4000)) - 5.0
    assert abs(got.std() - 2.0) < 0.1 and abs(got.mean()) < 4 * 2.0 / math.sqrt(4000)


def test_model_error_scales_masses_and_inertias_exactly_and_adds_friction_floored_at_zero():
    env = Rotor()
    m0, i0 = env.model.body_mass.copy(), env.model.body_inertia.copy()
    apply_model_error(env, "mass", 1.25)
    np.testing.assert_array_equal(env.model.body_mass, m0 * 1.25)
    apply_model_error(env, "inertia", 0.75)
    np.testing.assert_array_equal(env.model.body_inertia, i0 * 0.75)
    apply_model_error(env, "damping", 0.1)
    assert env.model.dof_damping[0] == pytest.approx(0.12)
    apply_model_error(env, "coulomb", -0.2)  # 0.05 - 0.2: no negative friction
    assert env.model.dof_frictionloss[0] == 0.0
    with pytest.raises(BpdError, match="unknown model parameter"):
        apply_model_error(env, "length", 1.1)


def test_damping_and_friction_per_joint():
    env = make_env("InvertedDoublePendulum-v5")
    m = env.unwrapped.model
    d0 = m.dof_damping.copy()
    apply_model_error(env, "damping", [0.5, 0.25], ["hinge2", "slider"])
    np.testing.assert_allclose(m.dof_damping, d0 + [0.25, 0, 0.5])
    g = grid(joints=["spin"], damping=[0.3])
    rotor = varied_env(Rotor, g, g.variations_of("model")[2 * 3])  # damping, level -1
    assert rotor.model.dof_damping[0] == 0.0  # 0.02 - 0.3, floored
    with pytest.raises(BpdError, match="damping gives 2 values"):
        grid(damping=[0.1, 0.2])
    env.close()


def test_damping_and_friction_leave_a_floating_base_alone():
    env = make_env("Hopper-v5")
    m = env.unwrapped.model
    d0 = m.dof_damping.copy()
    apply_model_error(env, "damping", 0.5)
    np.testing.assert_array_equal(m.dof_damping[:3], d0[:3])  # rootx, rootz, rooty
    np.testing.assert_allclose(m.dof_damping[3:], d0[3:] + 0.5)
    env.close()


def test_a_push_changes_the_rate_by_its_impulse_over_the_inertia_and_alternates():
    env = Push(Rotor(), "spin", 3.0, [0.05, 0.12], 0.03, DT)
    env.unwrapped.model.dof_damping[:] = 0
    env.unwrapped.model.dof_frictionloss[:] = 0
    obs, _ = env.reset(seed=0)
    w0 = float(env.unwrapped.data.qvel[0])
    rates = []
    for _ in range(20):
        env.step(np.zeros(1, np.float32))
        rates.append(float(env.unwrapped.data.qvel[0]) - w0)
    dw = 3.0 * 0.03 / INERTIA  # impulse / inertia: 0.9 rad/s
    assert rates[4] == pytest.approx(0.0, abs=1e-9)  # before tick 5
    assert rates[7] == pytest.approx(dw, rel=1e-9)  # ticks 5, 6, 7 pushed
    assert rates[11] == pytest.approx(dw, rel=1e-9)
    assert rates[14] == pytest.approx(0.0, abs=1e-9)  # ticks 12, 13, 14 pushed back


def test_velocity_entries_are_the_rig_layout_or_found_from_the_state():
    assert velocity_entries(Rotor()) == [1]
    for env_id, want in (("InvertedDoublePendulum-v5", [5, 6, 7]), ("Hopper-v5", list(range(5, 11)))):
        env = make_env(env_id)
        assert velocity_entries(env) == want
        env.close()


def test_default_grid_of_a_task_is_the_double_pendulum_scaled_to_its_actuators():
    env = make_env("InvertedPendulum-v5")  # gear 100, action +-3: 300 N at most
    g = RobustnessGrid.from_dict({}, default_grid(env))
    assert g.period_s == pytest.approx(0.04) and g.damping == [pytest.approx(0.1 / 6 * 300)]
    assert g.coulomb == [pytest.approx(0.2 / 6 * 300)] and g.torque_noise == [pytest.approx(1.1 / 6 * 3)]
    assert g.push_joint == "hinge" and len(g.variations_of("delay")) == 21
    assert [g.delay_ticks(v.value) for v in g.variations_of("delay")][-1] == 1  # 40 ms at 25 Hz
    assert len(g.variations_of("model")) == 4 * 21
    env.close()


def test_varied_env_applies_what_the_variation_says():
    g = grid()
    ks = [v.value for v in g.variations_of("torque_response")]
    assert ks == pytest.approx([0.1, 1.05, 2.0])
    assert [g.delay_ticks(v.value) for v in g.variations_of("delay")] == [0, 2, 4]
    env = varied_env(Rotor, g, g.variations_of("delay")[2])
    assert drive(env, [7.0] * 6) == [0.0] * 4 + [7.0] * 2


def test_a_controller_that_always_succeeds_scores_one():
    r = robustness(Rotor, lambda obs: np.zeros(1, np.float32), grid(), episodes=2)
    assert r["overall"] == 1.0 and all(c["score"] == 1.0 for c in r["categories"].values())
    assert len(r["categories"]["model"]["variations"]) == 12 and r["seeds"] == [0, 1]
    assert r["success_rule"].startswith("the env's own success")


def test_failing_one_category_costs_its_share_of_the_overall_score():
    made: list[Rotor] = []

    def make() -> Rotor:
        made.append(Rotor())
        return made[-1]

    def fussy(obs):  # asks for 100 N m, a failure, whenever the rate it reads is not the rotor's true rate
        return np.array([0.0 if obs[1] == np.float32(made[-1].data.qvel[0]) else 100.0], np.float32)

    r = robustness(make, fussy, grid(), episodes=2)
    # every noise level but the first (sigma 0) gives a reading off the truth
    assert [v["success"] for v in r["categories"]["velocity_noise"]["variations"]] == [1.0, 0.0, 0.0]
    assert r["categories"]["velocity_noise"]["score"] == pytest.approx(1 / 3)
    assert r["overall"] == pytest.approx((5 + 1 / 3) / 6)
    s = scores({c: [1.0] * 21 for c in CATEGORIES} | {"delay": [0.0] * 21})
    assert s["overall"] == pytest.approx(5 / 6) and s["categories"]["delay"] == 0.0


def test_without_its_own_verdict_an_episode_must_keep_the_share_of_the_nominal_return():
    class Plain(Rotor):  # no success in info: the return rule decides
        def step(self, action):
            obs, _, term, trunc, _ = super().step(action)
            return obs, -abs(float(obs[1])), term, trunc, {}

    # a pushed rotor spins and loses return against the same start unpushed; no push loses nothing
    r = robustness(Plain, lambda obs: np.array([-5.0 * obs[1]], np.float32), grid(push=30.0), episodes=2)
    assert r["success_rule"].startswith("not terminated early and return >=")
    push = r["categories"]["perturbation"]["variations"]
    assert push[0]["success"] == 1.0 and push[2]["success"] == 0.0


def test_bad_grids_are_one_line():
    with pytest.raises(BpdError, match="unknown key 'pushes'"):
        grid(pushes=3)
    with pytest.raises(BpdError, match="missing key 'push_joint'"):
        RobustnessGrid.from_dict({"period_s": DT, "damping": 0.1, "coulomb": 0.2, "velocity_noise": 0.5,
                                  "torque_noise": 1.1, "push": 3.0, "push_times_s": [1.0], "push_duration_s": 0.1})
    with pytest.raises(BpdError, match=r"damping\[0\] must be a finite number"):
        grid(damping=float("nan"))
    with pytest.raises(BpdError, match="response must be"):
        grid(response=[2.0, 0.1])
    with pytest.raises(BpdError, match="no joint 'elbow'"):
        varied_env(Rotor, grid(push_joint="elbow"), grid().variations_of("perturbation")[1])
    with pytest.raises(BpdError, match="2 sigmas for 1 velocity entries"):
        varied_env(Rotor, grid(velocity_noise=[0.1, 0.2]), grid().variations_of("velocity_noise")[1])
    with pytest.raises(BpdError, match="name entry 5 of a 2-entry observation"):
        varied_env(Rotor, grid(velocity_entries=[5]), grid().variations_of("velocity_noise")[1])
    with pytest.raises(BpdError, match="needs a MuJoCo environment"):
        default_grid(gym.make("Pendulum-v1"))


# ------------------------------------------------------------------ the rigs' blocks


RIG_ENVS = {"rotary-pendulum": "firmware_host.rig:bpd/rotary-pendulum-v0",
            "desktop-cartpole": "firmware_host.rig:bpd/desktop-cartpole-v0",
            "gym-inverted-pendulum": "firmware_host.rig:bpd/gym-inverted-pendulum-v0"}


@pytest.mark.parametrize("rig,ticks", [("rotary-pendulum", 20), ("desktop-cartpole", 8), ("gym-inverted-pendulum", 1)])
def test_a_rig_states_its_grid_and_its_spec_reads_it(rig, ticks):
    from firmware_host.rig import load_rig
    from training.robustness import grid_for

    g = load_rig(rig).robustness
    env = make_env(RIG_ENVS[rig])
    assert grid_for(env) == g and g.period_s == load_rig(rig).period_us * 1e-6
    assert g.delay_ticks(g.variations_of("delay")[-1].value) == ticks  # 40 ms
    assert velocity_entries(env) == [2, 3]  # positions, then their estimated rates
    env.close()
    with pytest.raises(BpdError, match="has no robustness block"):
        grid_for(make_env("firmware_host.rig:bpd/desktop-cartpole-swingup-v0"))


@pytest.mark.parametrize("rig", ["rotary-pendulum", "desktop-cartpole", "gym-inverted-pendulum"])
def test_a_rigs_largest_push_changes_the_pendulum_rate_by_about_2_rad_s(rig):
    from training.robustness import grid_for

    g = grid_for(make_env(RIG_ENVS[rig]))
    rates = []
    for force in (0.0, g.push):  # pushed at the reset, the rest of the rig free to move
        env = Push(make_env(RIG_ENVS[rig]), g.push_joint, force, [0.0], g.push_duration_s, g.period_s)
        env.reset(seed=0)
        for _ in range(int(round(g.push_duration_s / g.period_s))):
            env.step(np.zeros(1, np.float32))
        rates.append(float(env.unwrapped.plant.data.qvel[1]))
    assert rates[1] - rates[0] == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("rig", ["desktop-cartpole", "gym-inverted-pendulum"])
def test_the_cart_pole_lqr_balances_the_nominal_rig(rig):
    from firmware_host.rig.classical import CartPoleLqr
    from training.envs import rollouts

    lqr = CartPoleLqr(rig)
    assert np.abs(lqr.poles).max() < 1  # stable closed loop of the linearised tick
    ep = rollouts(RIG_ENVS[rig], lqr, 3)
    assert ep.returns == [1000.0] * 3 and not any(ep.terminated)


def test_a_robustness_run_stopped_while_plotting_leaves_the_previous_record_and_plot(tmp_path, monkeypatch):
    """`evaluate --robustness --out` wrote robustness.json, then drew robustness.png (a second or more): stopped
    while drawing, the directory held this run's record beside the previous run's plot (or none). Now the plot
    goes first and the record last."""
    import shutil

    import training.robustness as rb
    from bpd_app.cli import main
    from tests.test_bad_input import _hand_teacher

    _hand_teacher(tmp_path / "a.npz")
    shutil.copyfile(tmp_path / "a.npz", tmp_path / "b.npz")
    out = tmp_path / "rob"
    argv = ["evaluate", "--robustness", "--variation-episodes", "1", "--out", str(out)]
    assert main([*argv, str(tmp_path / "a.npz")]) == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    assert sorted(before) == ["robustness.json", "robustness.png"]

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(rb, "plot", stopped)
    assert main([*argv, str(tmp_path / "b.npz")]) == 130
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


def test_evaluate_robustness_says_how_the_controller_does_on_the_nominal_plant(tmp_path, capsys):
    """A controller that already fails on the unvaried plant scores near zero in every category: the output showed
    those scores alone, read as fragility. It now gives the nominal episodes' success share and returns beside them
    (here a random network, which lets the pendulum fall from both starts)."""
    from bpd_app.evaluate import EvaluateConfig, run_evaluate
    from tests.test_bad_input import _hand_teacher
    from training.envs import rollouts
    from training.teacher import load_teacher

    _hand_teacher(tmp_path / "a.npz")
    ep = rollouts("InvertedPendulum-v5", load_teacher(tmp_path / "a.npz").act, 2, 0)
    assert ep.terminated == [True, True]
    r = run_evaluate(EvaluateConfig(model=str(tmp_path / "a.npz"), robustness=True, variation_episodes=2))
    assert r["nominal_success"] == 0.0 and r["nominal_returns"] == [pytest.approx(x, abs=1e-3) for x in ep.returns]
    # minutes on a locomotion task, so it says what it runs and each category as it ends (on stderr: --json's
    # stdout stays one object); 4 sweeps of 21 in the model category, 21 in each of the five others
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("robustness: 189 variations x 2 episode(s) of InvertedPendulum-v5; each category's score as "
                      "it ends")
    assert err[1:] == [f"robustness: {c}: {r[f'robustness/{c}']:.3f}" for c in CATEGORIES]
