"""The rotary pendulum rig, its motor model and sensing, the swing-up environments and the classical
controller (Python and C)."""

from __future__ import annotations

import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from firmware_host.rig import ObservationFilter, Plant, load_rig
from firmware_host.rig.classical import (
    C_FIELDS,
    EnergyLqrController,
    design,
    discretise,
    export_classical,
    lqr_continuous,
    lqr_discrete,
)
from firmware_host.rig.plants.furuta import FurutaParams, G
from firmware_host.rig.swingup import SwingUpEnv, wrap_angle

RIG = "rotary-pendulum"


@pytest.fixture(scope="module")
def spec():
    return load_rig(RIG)


@pytest.fixture(scope="module")
def params(spec):
    return FurutaParams.from_rig(spec.raw)


def _set_state(plant: Plant, qpos, qvel) -> None:
    plant.data.qpos[:] = qpos
    plant.data.qvel[:] = qvel
    mujoco.mj_forward(plant.model, plant.data)


# ------------------------------------------------------------------ plant and motor


def test_rig_loads_with_cited_parameters(spec, params):
    assert spec.plant == "furuta" and spec.period_us == 2000 and spec.n_pos == 2
    assert params.resistance == 8.4 and params.torque_constant == 0.042 and params.back_emf_constant == 0.042
    assert spec.sensors["counts_per_unit"][0] == pytest.approx(2048 / (2 * math.pi))
    assert Plant(spec).substeps == 2  # 1 ms physics, 2 ms tick


def test_motor_torque_matches_dc_motor_law(spec, params):
    """MuJoCo's actuator + passive forces on the arm equal (k_t/R) V - (k_t k_m/R + b) w."""
    plant = Plant(spec)
    plant.model.dof_frictionloss[:] = 0.0
    for volts, w in [(5.0, 0.0), (-3.0, 7.5), (10.0, -20.0), (0.0, 4.0)]:
        _set_state(plant, [0.3, 3.0], [w, 0.0])
        plant.data.ctrl[:] = volts
        mujoco.mj_forward(plant.model, plant.data)
        tau = plant.data.qfrc_actuator[0] + plant.data.qfrc_passive[0]
        expect = params.torque_constant / params.resistance * volts - (
            params.torque_constant * params.back_emf_constant / params.resistance + params.arm_damping) * w
        assert tau == pytest.approx(expect, rel=1e-9, abs=1e-12)
        assert params.motor_torque(volts, w) - params.arm_damping * w == pytest.approx(expect)


def test_voltage_limit_is_the_actuator_range(spec):
    plant = Plant(spec)
    assert tuple(plant.model.actuator_ctrlrange[0]) == (-10.0, 10.0)


def test_linearised_model_matches_mujoco(spec, params):
    """Closed-form linearisation about upright against central differences of MuJoCo's dynamics."""
    plant = Plant(spec)
    plant.model.dof_frictionloss[:] = 0.0  # Coulomb friction is not differentiable at rest
    m, d = plant.model, plant.data

    def f(x, u):
        d.qpos[:], d.qvel[:], d.ctrl[:] = x[:2], x[2:], u
        mujoco.mj_forward(m, d)
        return np.concatenate([x[2:], d.qacc])

    h, x0 = 1e-6, np.zeros(4)
    a_fd = np.stack([(f(x0 + h * e, [0.0]) - f(x0 - h * e, [0.0])) / (2 * h) for e in np.eye(4)], 1)
    b_fd = (f(x0, [h]) - f(x0, [-h])) / (2 * h)
    A, B = params.linearised()
    np.testing.assert_allclose(A, a_fd, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(B[:, 0], b_fd, rtol=1e-6)
    assert A[3, 1] > 0  # upright is unstable: gravity accelerates the pendulum away


def test_pendulum_energy_at_known_states(params):
    mgl = params.pend_mass * G * params.pend_length / 2
    jp = params.pend_mass * params.pend_length ** 2 / 3  # uniform rod about its end
    assert params.pend_inertia_pivot == pytest.approx(jp)
    assert params.energy(0.0, 0.0) == 0.0
    assert params.energy(math.pi, 0.0) == pytest.approx(-2 * mgl)
    assert params.energy(math.pi / 2, 3.0) == pytest.approx(0.5 * jp * 9.0 - mgl)
    assert params.energy(-math.pi, 0.0) == pytest.approx(params.energy(math.pi, 0.0))
    # released from horizontal with the arm held still, the pendulum reaches the bottom with the
    # speed energy conservation gives (no friction)
    spec = load_rig(RIG)
    plant = Plant(spec)
    plant.model.dof_frictionloss[:] = 0.0
    plant.model.dof_damping[:] = 0.0
    plant.model.jnt_range[:] = 0.0
    plant.model.body_mass[1] = 1e6  # a very heavy arm: effectively held
    plant.model.body_inertia[1] = [1e6] * 3
    mujoco.mj_setConst(plant.model, plant.data)
    _set_state(plant, [0.0, math.pi / 2], [0.0, 0.0])
    speeds = []
    for _ in range(400):
        plant.substep(np.zeros(1))
        speeds.append(abs(plant.data.qvel[1]))
    assert max(speeds) == pytest.approx(math.sqrt(2 * mgl / jp), rel=1e-3)


# ------------------------------------------------------------------ sensing


def test_encoder_quantisation_on_known_angles(spec):
    plant = Plant(spec)
    cpu = 2048 / (2 * math.pi)
    for th, al in [(0.1, math.pi), (-1.0, 0.001), (0.0015, -0.0016)]:
        _set_state(plant, [th, al], [0.0, 0.0])
        raw = plant.sensors()
        assert list(raw) == [round(th * cpu), round(al * cpu)]  # counts; the firmware divides
    filt = ObservationFilter(spec)
    _set_state(plant, [0.1, math.pi], [0, 0])
    obs = filt(plant.sensors())
    assert abs(obs[0] - 0.1) <= 0.5 / cpu and abs(obs[1] - math.pi) <= 0.5 / cpu
    assert obs[2] == 0.0 and obs[3] == 0.0  # the first sample has no difference yet


def test_velocity_estimate_on_known_trajectories(spec):
    """The firmware's estimate (filtered difference of quantised angles) on a constant speed and a
    sine: converges to the speed within one count per tick; lags the sine by the filter's phase."""
    cpu = 2048 / (2 * math.pi)
    dt = spec.period_us * 1e-6
    filt = ObservationFilter(spec)
    w = 3.7
    for k in range(400):
        raw = np.round(np.array([w * k * dt, -w * k * dt]) * cpu).astype(np.float32)
        obs = filt(raw)
    np.testing.assert_allclose(obs[2:], [w, -w], atol=1.0 / cpu / dt * 0.2)
    # on a sine the estimate is the sine through the firmware's discrete filter:
    # H(z) = (1 - z^-1) / dt * a / (1 - (1 - a) z^-1), a = wc / (1 + wc), wc = 2 pi fc dt
    filt.reset()
    f, amp = 2.0, 0.5
    n = np.arange(2000)
    t = n * dt
    est = np.array([filt(np.round(np.array([amp * math.sin(2 * math.pi * f * tk), 0.0]) * cpu)
                         .astype(np.float32))[2] for tk in t])
    wc = 2 * math.pi * spec.sensors["velocity_filter_hz"] * dt
    a = wc / (1 + wc)
    z = np.exp(1j * 2 * math.pi * f * dt)
    h = (1 - 1 / z) / dt * a / (1 - (1 - a) / z)
    expect = amp * np.abs(h) * np.sin(2 * math.pi * f * t + np.angle(h))
    np.testing.assert_allclose(est[500:], expect[500:], atol=1.0 / cpu / dt * 0.5)
    fit = np.linalg.lstsq(np.stack([np.sin(2 * math.pi * f * t[500:]), np.cos(2 * math.pi * f * t[500:])], 1),
                          est[500:], rcond=None)[0]
    assert math.hypot(*fit) == pytest.approx(amp * abs(h), rel=0.01)


# ------------------------------------------------------------------ environments


def test_swingup_env_starts_hanging_and_rewards_upright():
    env = gym.make("firmware_host.rig:bpd/rotary-pendulum-v0")
    obs, _ = env.reset(seed=3)
    assert abs(abs(obs[1]) - math.pi) < 0.06 and abs(obs[0]) < 0.06
    _, r, term, trunc, info = env.step(np.zeros(1, np.float32))
    assert r < 0.01 and not term and not trunc and not info["upright"]
    u = env.unwrapped
    _set_state(u.plant, [0.0, 0.0], [0.0, 0.0])
    _, r, _, _, info = env.step(np.zeros(1, np.float32))
    assert r == pytest.approx(1.5, abs=1e-3) and info["upright"]  # cos term 1 + full energy bonus 0.5
    assert u.pendulum_energy(0.3, 2.0) == pytest.approx(FurutaParams.from_rig(u.spec_rig.raw).energy(0.3, 2.0))
    _set_state(u.plant, [2.5, 0.0], [0.0, 0.0])  # beyond the arm limit
    _, r, term, _, info = env.step(np.zeros(1, np.float32))
    assert term and r < -40 and info["success"] is False


def test_swingup_env_registrations_and_randomisation():
    for eid in ("bpd/rotary-pendulum-dr-v0", "bpd/desktop-cartpole-swingup-v0", "bpd/desktop-cartpole-swingup-dr-v0"):
        env = gym.make(f"firmware_host.rig:{eid}")
        obs, _ = env.reset(seed=0)
        assert env.observation_space.shape == (4,) and abs(abs(obs[1]) - math.pi) < 0.1
    env = gym.make("firmware_host.rig:bpd/rotary-pendulum-dr-v0").unwrapped
    masses = set()
    for s in range(4):
        env.reset(seed=s)
        masses.add(round(float(env.plant.model.body_mass[2]), 6))
    assert len(masses) == 4 and all(0.9 * 0.024 <= m <= 1.1 * 0.024 for m in masses)


def test_perturbations_latency_quantisation_scale():
    env = SwingUpEnv(RIG, extra_latency=2, action_step=0.5, scale={"mass": 1.2})
    env.reset(seed=0)
    assert env.plant.model.body_mass[2] == pytest.approx(0.024 * 1.2)
    applied = []
    for a in (1.3, -2.2, 4.0, 0.0):
        env.step(np.array([a], np.float32))
        applied.append(float(env.plant.data.ctrl[0]))
    assert applied == [0.0, 0.0, 1.5, -2.0]  # two ticks late, on a 0.5 V grid
    with pytest.raises(ValueError):
        SwingUpEnv(RIG, scale={"colour": 2.0})
    assert wrap_angle(3 * math.pi / 2) == pytest.approx(-math.pi / 2)


# ------------------------------------------------------------------ classical controller


def test_lqr_solvers_against_closed_form():
    """Double integrator, Q = I, R = 1: K = [1, sqrt(3)] (closed form of the continuous Riccati
    equation); the discrete design tends to it as the period shrinks."""
    A = np.array([[0.0, 1.0], [0.0, 0.0]])
    B = np.array([[0.0], [1.0]])
    K = lqr_continuous(A, B, np.eye(2), np.eye(1))
    np.testing.assert_allclose(K, [[1.0, math.sqrt(3.0)]], rtol=1e-9)
    dt = 1e-4
    Ad, Bd = discretise(A, B, dt)
    np.testing.assert_allclose(Ad, [[1, dt], [0, 1]], atol=1e-15)
    np.testing.assert_allclose(Bd[:, 0], [dt * dt / 2, dt], rtol=1e-12)
    Kd = lqr_discrete(Ad, Bd, np.eye(2) * dt, np.eye(1) * dt)
    np.testing.assert_allclose(Kd, K, rtol=2e-3)


def test_furuta_lqr_gains_stabilise_and_match(params):
    d = design(RIG)
    K = np.array([d.gains])
    A, B = params.linearised()
    Ad, Bd = discretise(A, B, d.period_s)
    poles = np.linalg.eigvals(Ad - Bd @ K)
    assert np.all(np.abs(poles) < 1.0)  # discrete closed loop is stable
    np.testing.assert_allclose(sorted(np.abs(poles)), sorted(abs(p) for p in d.closed_loop_poles), rtol=1e-9)
    # independent of scipy's solver: iterate the discrete Riccati recursion to its fixed point
    Q, R = np.diag([5.0, 1.0, 1.0, 1.0]), np.eye(1)
    P = Q.copy()
    for _ in range(200_000):
        Kp = np.linalg.solve(R + Bd.T @ P @ Bd, Bd.T @ P @ Ad)
        P_next = Q + Ad.T @ P @ (Ad - Bd @ Kp)
        if np.abs(P_next - P).max() < 1e-10 * np.abs(P).max():
            break
        P = P_next
    np.testing.assert_allclose(K, Kp, rtol=1e-6)
    np.testing.assert_allclose(sorted(np.abs(np.linalg.eigvals(Ad - Bd @ Kp))), sorted(np.abs(poles)), rtol=1e-6)
    # the continuous design on the same weights is close (the fastest closed-loop pole, about 70 rad/s,
    # is 7 times slower than the 500 Hz loop) and stabilises the continuous model
    Kc = lqr_continuous(A, B, Q, R)
    np.testing.assert_allclose(K, Kc, rtol=0.1)
    assert np.all(np.linalg.eigvals(A - B @ Kc).real < 0)
    assert np.all(np.linalg.eigvals(A).real.max() > 0)  # and the open loop is not
    # the lab's sign pattern: push the arm towards the fall, pendulum gain dominates
    assert d.gains[1] > 20 and d.gains[3] > 0 and d.gains[0] < 0


def test_classical_swings_up_nominal_plant_from_hanging():
    """Fixed seeds: upright within 2 s, held to the end of the 5 s episode."""
    ctrl = EnergyLqrController(design(RIG))
    env = gym.make("firmware_host.rig:bpd/rotary-pendulum-v0")
    for seed in (0, 1):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(ctrl(obs))
            done = term or trunc
        assert info["success"] and info["time_to_upright"] < 2.0


def test_c_classical_matches_python_on_golden_states(tmp_path):
    from export.c_export import CPolicy

    info = export_classical(RIG, tmp_path / "classical")
    assert len(info["design"]) and set(C_FIELDS) <= set(info["design"])
    c = CPolicy(tmp_path / "classical")
    assert c.obs_dim == 4 and c.act_dim == 1 and c.model_hash == info["model_hash"]
    d = design(RIG)
    py = EnergyLqrController(d)
    rng = np.random.default_rng(0)
    states = [np.array([0.0, math.pi, 0.0, 0.0]), np.array([0.1, 0.05, -0.3, 0.8]),
              np.array([-0.4, 2 * math.pi - 0.1, 1.0, -2.0]), np.array([1.2, 2.0, 5.0, -9.0])]
    states += list(rng.uniform([-2, -7, -15, -25], [2, 7, 15, 25], (300, 4)))
    compared = 0
    for s in states:
        s = s.astype(np.float32)
        phi = float(wrap_angle(float(s[1])))
        if abs(abs(phi) - d.switch_angle) < 1e-3 or abs(s[3] * math.cos(float(s[1]))) < 1e-2:
            continue  # on a switching surface float32 and float64 may take different branches
        rc, a = c.run(s)
        assert rc == 0
        assert a[0] == pytest.approx(float(py(s)[0]), abs=2e-3)
        compared += 1
    assert compared > 250
    rc, a = c.run(np.array([0.0, np.nan, 0.0, 0.0], np.float32))
    assert rc == -1 and a[0] == 0.0  # non-finite observation: safe action, error code


def test_a_trial_takes_a_classical_export_without_runtime_c(tmp_path):
    """A classical export has no policy.onnx: `bpd hil run --policy` takes it with the default runtime (it was
    refused as 'policy.onnx: no such file'), as its C."""
    from hil.policy import load_host_policy

    info = export_classical(RIG, tmp_path / "cx")
    pol = load_host_policy(tmp_path / "cx")
    assert (pol.runtime, pol.obs_dim, pol.act_dim, pol.model_hash) == ("c", 4, 1, info["model_hash"])
    v = EnergyLqrController(design(RIG))(np.array([0.1, 0.05, -0.3, 0.8]))
    assert pol.act(np.array([0.1, 0.05, -0.3, 0.8], np.float32))[0] == pytest.approx(float(v[0]), abs=2e-3)


def test_bad_input_is_one_line(tmp_path, capsys):
    from bpd_app.cli import main

    assert main(["teacher", "train", "--gamma", "1.5", "--out", str(tmp_path / "t.npz")]) == 1
    assert capsys.readouterr().err.strip() == "bpd: error: --gamma must be in (0, 1)"
    assert main(["classical", "export", "--rig", "desktop-cartpole", "--out", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bpd: error: the classical controller is designed for rotary pendulum rigs")
    assert "\n" not in err
    assert main(["classical", "export", "--rig", "no-such-rig", "--out", str(tmp_path / "c")]) == 1
    assert capsys.readouterr().err.startswith("bpd: error: no rig 'no-such-rig'")
    assert main(["classical", "export", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "policy.c").is_file() and "energy swing-up + LQR" in capsys.readouterr().out


def test_classical_swings_up_the_simulated_rig_in_device_mode(tmp_path):
    """The exported C controller on the firmware core (device mode, lockstep): upright by 2 s,
    still upright at 3 s, no limit stop."""
    from bpd_app.cli import main
    from hil.ticklog import read_ticks

    export_classical(RIG, tmp_path / "cx")
    assert main(["hil", "run", "--port", "sim", "--lockstep", "--rig", RIG, "--policy", str(tmp_path / "cx"),
                 "--mode", "device", "--runtime", "c", "--steps", "1500", "--out", str(tmp_path / "log"),
                 "--no-plots"]) == 0
    ticks = read_ticks(tmp_path / "log" / "ticks.csv")
    assert len(ticks) == 1500
    upright = [abs(float(wrap_angle(float(t["obs1"])))) < 0.2 for t in ticks]
    assert all(upright[1000:]) and not any(upright[:100])
    assert all(abs(float(t["action0"])) <= 10.0 for t in ticks)


def test_teacher_work_dirs_from_before_new_options_still_resume(tmp_path):
    """A training started before --gamma and --train-freq existed ran with their defaults."""
    import json

    from bpd.errors import BpdError
    from training.teacher import TeacherTrainConfig, _TeacherWork

    cfg = TeacherTrainConfig(out=str(tmp_path / "t.npz"), work_dir=str(tmp_path / "w"), resume=True)
    with pytest.raises(BpdError, match="holds no training to resume"):  # nothing started yet
        _TeacherWork(cfg).prepare(cfg)
    work = _TeacherWork(TeacherTrainConfig(out=cfg.out, work_dir=cfg.work_dir))
    assert work.prepare(TeacherTrainConfig(out=cfg.out, work_dir=cfg.work_dir)) is False
    old = json.loads(work.config.read_text())
    del old["gamma"], old["train_freq"]
    work.config.write_text(json.dumps(old))
    assert _TeacherWork(cfg).prepare(cfg) is False  # same options: resumes (nothing checkpointed yet)
    changed = TeacherTrainConfig(out=cfg.out, work_dir=cfg.work_dir, resume=True, train_freq=4)
    with pytest.raises(BpdError, match="train_freq"):
        _TeacherWork(changed).prepare(changed)


def test_firmware_observation_matches_the_env_on_two_encoders(tmp_path):
    """The firmware core's observation (counts to radians, filtered-difference velocities of both
    encoders) equals the env's ObservationFilter on a swing-up trajectory: the teacher trains on what
    the device computes."""
    from firmware_host.rig.device import SoftwareDevice, build_device_library
    from firmware_host.wire.codec import Parser, encode

    spec = load_rig(RIG)
    dev = SoftwareDevice(spec, build_device_library(tmp_path, spec))
    parser = Parser()
    lim = spec.limits
    for seq, (name, fields) in enumerate([
            ("config", dict(period_us=spec.period_us, watchdog_ticks=spec.watchdog_ticks, mode=False,
                            action_limit=lim["action"], pos_limit=lim["position"], angle_limit=lim["angle"])),
            ("start", {})]):
        dev.rx(encode(name, seq, **fields))
    parser.feed(dev.tx())
    ctrl = EnergyLqrController(design(RIG))
    plant, filt = Plant(spec), ObservationFilter(spec)
    plant.reset(7)
    t, worst, peak = 0, 0.0, 0.0
    for k in range(600):
        raw = plant.sensors()
        expect = filt(raw)
        t += spec.period_us
        dev.set_time(t)
        dev.set_sensors(raw)
        dev.tick()
        (state,) = [f for f in parser.feed(dev.tx()) if f.name == "state"]
        dev.rx(encode("action", 2 + k, echo_seq=state.seq, n_act=1, action=[0.0]))  # the host there: the watchdog fed
        got = np.array(state.fields["obs"][:4], np.float32)
        worst = max(worst, float(np.abs(got - expect).max()))
        peak = max(peak, abs(float(expect[3])))
        u = ctrl(expect)
        for _ in range(plant.substeps):
            plant.substep(u)
    assert worst < 1e-3  # float32 in both; differences are rounding only
    assert peak > 5.0  # the pendulum swung: the velocity estimates were exercised
