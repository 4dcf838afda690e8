"""Domain randomisation for evaluation: a rig's ranges applied to any MuJoCo environment's model."""

from __future__ import annotations

import numpy as np
import pytest

from bpd.errors import BpdError
from firmware_host.rig import randomization
from training.envs import Randomize, check_randomization, make_env, make_eval_env, rollouts

RANGES = {"mass_scale": [0.8, 1.2], "friction_scale": [0.7, 1.3], "motor_gain": [0.9, 1.1]}


def _env(ranges=RANGES) -> Randomize:
    return Randomize(make_env("InvertedDoublePendulum-v5"), ranges)


def test_each_reset_scales_the_model_by_the_factors_drawn_within_range():
    env = _env()
    n = {k: v.copy() for k, v in env.nominal.items()}
    _, info = env.reset(seed=7)
    s = info["randomization"]
    for k, (lo, hi) in RANGES.items():
        assert lo <= s[k] <= hi
    m = env.unwrapped.model
    np.testing.assert_allclose(m.body_mass, n["body_mass"] * s["mass_scale"])
    np.testing.assert_allclose(m.body_inertia, n["body_inertia"] * s["mass_scale"])
    np.testing.assert_allclose(m.geom_friction[:, 0], n["geom_friction"][:, 0] * s["friction_scale"])
    np.testing.assert_allclose(m.geom_friction[:, 1:], n["geom_friction"][:, 1:])  # torsional, rolling: nominal
    np.testing.assert_allclose(m.dof_damping, n["dof_damping"] * s["friction_scale"])
    np.testing.assert_allclose(m.actuator_gear[:, 0], n["actuator_gear"][:, 0] * s["motor_gain"])
    # factors are drawn from the nominal model, never compounded, and the same seed gives the same plant
    _, info2 = env.reset(seed=8)
    _, info3 = env.reset(seed=7)
    assert info3["randomization"] == s and info2["randomization"] != s
    np.testing.assert_allclose(m.body_mass, n["body_mass"] * s["mass_scale"])
    env.close()


def test_the_draws_cover_the_range_uniformly():
    env = _env({"mass_scale": [0.5, 1.5]})
    draws = np.array([env.draw(seed)["mass_scale"] for seed in range(2000)])
    assert draws.min() >= 0.5 and draws.max() <= 1.5
    assert abs(draws.mean() - 1.0) < 0.02 and abs(draws.std() - 1 / np.sqrt(12)) < 0.02
    assert env.draw(3)["friction_scale"] == 1.0 and env.draw(3)["motor_gain"] == 1.0  # not in the block
    env.close()


def test_zero_width_ranges_reproduce_the_nominal_episodes():
    teacher_like = (lambda obs: np.full(1, 0.3 * np.tanh(obs[1] * 3 + obs[5])))
    nominal = rollouts("InvertedDoublePendulum-v5", teacher_like, 3, seed=11)
    same = rollouts("InvertedDoublePendulum-v5", teacher_like, 3, seed=11,
                    randomization={"mass_scale": [1, 1], "friction_scale": [1, 1], "motor_gain": [1, 1]})
    assert nominal.returns == same.returns and nominal.lengths == same.lengths


def test_randomised_episodes_differ_from_nominal_and_repeat_exactly():
    pol = (lambda obs: np.full(1, 0.3 * np.tanh(obs[1] * 3 + obs[5])))
    heavy = {"mass_scale": [1.5, 1.6]}
    a = rollouts("InvertedDoublePendulum-v5", pol, 2, seed=0, randomization=heavy)
    b = rollouts("InvertedDoublePendulum-v5", pol, 2, seed=0, randomization=heavy)
    c = rollouts("InvertedDoublePendulum-v5", pol, 2, seed=0)
    assert a.returns == b.returns and a.returns != c.returns


def test_a_rig_environment_randomises_itself_and_others_are_refused():
    name, ranges = randomization("desktop-cartpole")
    assert name == "desktop-cartpole" and ranges["mass_scale"] == (0.8, 1.2)
    env = make_eval_env("firmware_host.rig:bpd/desktop-cartpole-v0", ranges, name)
    assert env.unwrapped.randomize is True
    masses = set()
    for seed in range(4):
        env.reset(seed=seed)
        masses.add(float(env.unwrapped.plant.model.body_mass.sum()))
    assert len(masses) == 4  # a new plant every episode
    env.close()
    with pytest.raises(BpdError, match="give --randomize desktop-cartpole"):
        make_eval_env("firmware_host.rig:bpd/desktop-cartpole-v0", ranges, "rotary-pendulum")
    with pytest.raises(BpdError, match="has no randomization block"):
        randomization("gym-inverted-pendulum")
    with pytest.raises(BpdError, match="needs a MuJoCo environment"):
        make_eval_env("Pendulum-v1", RANGES)


def test_derived_mass_constants_follow_the_scaled_masses():
    """Hopper has contacts, whose softness MuJoCo derives from the masses (dof_invweight0): those constants
    must be the ones of a model built with the heavier masses, and subtree masses scale by the factor."""
    import mujoco

    env = Randomize(make_env("Hopper-v5"), {"mass_scale": [2.0, 2.0]})
    m = env.unwrapped.model
    sub0 = m.body_subtreemass.copy()
    env.reset(seed=0)
    np.testing.assert_allclose(m.body_subtreemass, 2.0 * sub0, rtol=1e-12)
    ref = make_env("Hopper-v5")
    rm = ref.unwrapped.model
    rm.body_mass[:] *= 2.0
    rm.body_inertia[:] *= 2.0
    mujoco.mj_setConst(rm, ref.unwrapped.data)
    np.testing.assert_allclose(m.dof_invweight0, rm.dof_invweight0, rtol=1e-12)
    np.testing.assert_allclose(m.body_invweight0, rm.body_invweight0, rtol=1e-12)
    assert not np.allclose(m.dof_invweight0, make_env("Hopper-v5").unwrapped.model.dof_invweight0)
    env.close()
    ref.close()


def test_unseeded_resets_continue_the_seeded_sequence():
    def sequence():
        env = _env()
        draws = [env.reset(seed=3)[1]["randomization"]] + [env.reset()[1]["randomization"] for _ in range(3)]
        env.close()
        return draws

    a, b = sequence(), sequence()
    assert a == b and len({d["mass_scale"] for d in a}) == 4


@pytest.mark.parametrize("block, msg", [
    ([0.9, 1.1], "must be a mapping"),
    ({}, "must be a mapping"),
    ({"masscale": [0.9, 1.1]}, "unknown randomization key"),
    ({"mass_scale": 1.2}, "must be \\[low, high\\]"),
    ({"mass_scale": [0.9, 1.0, 1.1]}, "must be \\[low, high\\]"),
    ({"mass_scale": [0.0, 1.0]}, "0 < low <= high"),
    ({"motor_gain": [1.1, 0.9]}, "0 < low <= high"),
    ({"friction_scale": [0.5, float("inf")]}, "0 < low <= high"),
])
def test_malformed_blocks_are_refused(block, msg):
    with pytest.raises(BpdError, match=msg):
        check_randomization(block, "here")
    with pytest.raises(BpdError, match=msg):
        Randomize(make_env("InvertedDoublePendulum-v5"), block)
