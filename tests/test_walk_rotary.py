"""The rotary (Furuta) pendulum rig as a newcomer with another Furuta pendulum walks it: a YAML of their own,
copied from rotary-pendulum.yaml and edited. Each mistake in it is one line naming the key, before any rig,
build or trial starts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from bpd.errors import BpdError
from firmware_host.rig import load_rig
from tests.conftest import edit_nested

ROOT = Path(__file__).resolve().parents[1]


def _rig(tmp_path, **changes) -> str:
    """rotary-pendulum.yaml with changes: key (a__b for a nested one) to a value, None to delete it."""
    raw = edit_nested(yaml.safe_load(load_rig("rotary-pendulum").path.read_text()), changes, None)
    raw["name"] = "my-furuta"
    p = tmp_path / "my-furuta.yaml"
    p.write_text(yaml.safe_dump(raw))
    return str(p)


def test_another_furuta_pendulum_loads(tmp_path):
    spec = load_rig(_rig(tmp_path, arm__length=0.1, limits__action=6.0))
    assert (spec.name, spec.raw["arm"]["length"], spec.limits["action"]) == ("my-furuta", 0.1, 6.0)


@pytest.mark.parametrize("units, msg", [
    ("V", "units must map position, angle and action to their names (got 'V')"),
    ({"action": ["V"]}, "units must map position, angle and action to their names"),
    ({"actoin": "V"}, "unknown key units.'actoin' (did you mean 'action'?)"),
])
def test_units_that_are_not_a_mapping_of_names_are_refused(tmp_path, units, msg):
    """`units: V` was taken, and every trial (the tick log's labels) and `rig sim --view` ended in an internal
    error: AttributeError: 'str' object has no attribute 'get'."""
    with pytest.raises(BpdError, match="not a valid rig description: " + re.escape(msg)):
        load_rig(_rig(tmp_path, units=units))


def test_a_trial_on_a_rig_with_bad_units_is_one_line(tmp_path, capsys):
    from bpd_app.cli import main
    from firmware_host.rig.classical import export_classical

    export_classical("rotary-pendulum", tmp_path / "cx")
    rig = _rig(tmp_path, units="V")
    assert main(["hil", "run", "--port", "sim", "--lockstep", "--rig", rig, "--policy", str(tmp_path / "cx"),
                 "--steps", "5", "--out", str(tmp_path / "log"), "--no-plots"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bpd: error: ") and "units must map" in err[0]


@pytest.mark.parametrize("changes, msg", [
    (dict(task_spec__hold_s=None), "missing key task_spec.hold_s"),
    (dict(task_spec__hold=1.0), "unknown key task_spec.'hold' (did you mean 'hold_s'?)"),
    (dict(task_spec__upright_band=-0.2), "task_spec.upright_band must be above 0 (got -0.2)"),
    (dict(task_spec__arm_cost="0.1"), "task_spec.arm_cost must be a finite number (got '0.1')"),
    (dict(task_spec=None), "task_spec must be a mapping of upright_band, hold_s"),
    (dict(task="swing-up"), "task must be swingup, or no task key for a balance rig (got 'swing-up')"),
    (dict(task=None), "task_spec is a swing-up rig's reward and success: add task: swingup, or remove it"),
])
def test_a_swingup_task_spec_with_a_missing_or_bad_key_is_refused(tmp_path, changes, msg):
    """A task_spec without hold_s (or with it misspelt) was taken, and the swing-up environment on the rig
    ended in KeyError: 'hold_s' (an internal error) when a teacher trained or a policy was evaluated in it; a
    negative upright_band made success impossible without a word."""
    with pytest.raises(BpdError, match="not a valid rig description: " + re.escape(msg)):
        load_rig(_rig(tmp_path, **changes))


@pytest.mark.parametrize("changes, msg", [
    (dict(task_spec__hold_s=5.0), "task_spec.hold_s 5 s is not shorter than an episode (5 s: max_episode_steps x "
     "period_us): no episode could succeed"),
    (dict(max_episode_steps=400), "task_spec.hold_s 1 s is not shorter than an episode (0.8 s"),
    (dict(task_spec__upright_band=2.0), "task_spec.upright_band 2 rad reaches below horizontal (pi/2): a pendulum "
     "that never swung up would count as upright"),
])
def test_a_success_rule_no_episode_could_meet_or_every_one_would_is_refused(tmp_path, changes, msg):
    """Known answers: the shipped rig's episode is 2500 ticks of 2 ms, 5 s, and starts hanging, so a hold of 5 s (or
    of 1 s in 400 ticks, 0.8 s) can never be met, and a band of 2 rad counts a pendulum 115 degrees from upright as
    upright. Each was taken: every episode of every evaluation, robustness score and benchmark scored a failure (or
    a success) without a word. A hold just short of the episode and a band just short of horizontal are taken."""
    with pytest.raises(BpdError, match="not a valid rig description: " + re.escape(msg)):
        load_rig(_rig(tmp_path, **changes))
    ts = load_rig(_rig(tmp_path, task_spec__hold_s=4.9, task_spec__upright_band=1.5)).raw["task_spec"]
    assert (ts["hold_s"], ts["upright_band"]) == (4.9, 1.5)


def test_the_swingup_environment_of_such_a_rig_is_refused_when_made(tmp_path):
    from firmware_host.rig.swingup import SwingUpEnv

    with pytest.raises(BpdError, match=re.escape("missing key task_spec.hold_s")):
        SwingUpEnv(_rig(tmp_path, task_spec__hold_s=None))


@pytest.mark.parametrize("timestep, steps", [(0.003, "0.667"), (0.0007, "2.86")])
def test_a_physics_timestep_that_does_not_divide_the_period_is_refused(tmp_path, timestep, steps):
    """The plant advances a whole number of physics steps per tick (round(period / timestep)): 0.003 s on a 2 ms
    tick ran the simulated pendulum 1.5 times as fast as the device's clock, 0.0007 s 1.05 times, and the LQR
    designed at the rig's period met another plant; both were taken without a word."""
    with pytest.raises(BpdError, match="not a valid rig description: " + re.escape(
            f"physics_timestep {timestep} s is not the period (2000 us) over a whole number of steps ({steps})")):
        load_rig(_rig(tmp_path, physics_timestep=timestep))
    assert load_rig(_rig(tmp_path, physics_timestep=0.0005)).raw["physics_timestep"] == 0.0005


@pytest.mark.parametrize("changes, msg", [
    (dict(limits__angle=3.0),
     "a run starts at +3.142 +- 0.05 (initial_qpos[1], reset_noise), not inside limits.angle 3"),
    (dict(limits__position=0.05, initial_qpos=[0.02, 3.14]),
     "a run starts at +0.02 +- 0.05 (initial_qpos[0], reset_noise), not inside limits.position 0.05"),
])
def test_a_start_beyond_the_rigs_own_limits_is_refused(tmp_path, changes, msg):
    """A swing-up rig's pendulum starts hanging (pi): an angle limit of 3 rad (a balance rig's habit) was taken, and
    every episode of every trial ended at its first tick, 'limit (device stopped)', with nothing to say why."""
    with pytest.raises(BpdError, match=re.escape(msg) + ": every run would stop at its first tick$"):
        load_rig(_rig(tmp_path, **changes))
    assert load_rig(_rig(tmp_path, limits__angle=3.2)).limits["angle"] == 3.2


def test_a_classical_export_of_another_rig_or_an_older_yaml_is_refused(tmp_path, capsys):
    """The classical controller is generated from its rig's YAML: one designed for a 0.1 m arm and 12 V ran on the
    rotary-pendulum rig (as its policy, in a firmware image, or as hand-over's fallback) without a word, its gains
    another plant's; so did one exported before the YAML was edited. Now each is one line saying to export again."""
    from bpd_app.cli import main
    from firmware_host.rig.classical import check_designed_for, export_classical

    mine = _rig(tmp_path, arm__length=0.1, limits__action=12.0)  # (at 6 V its design does not swing up: refused)
    export_classical(mine, tmp_path / "cx")
    # its generated files say how to make them again: with the YAML it was made from (it said --rig my-furuta,
    # which is no shipped rig: "no rig 'my-furuta'")
    banner = (tmp_path / "cx" / "policy_weights.c").read_text()
    assert f"regenerate with: bpd classical export --rig {mine} --out DIR */" in banner
    check_designed_for(tmp_path / "cx", load_rig(mine))  # its own rig: taken
    assert main(["hil", "run", "--port", "sim", "--rig", "rotary-pendulum", "--policy", str(tmp_path / "cx"),
                 "--out", str(tmp_path / "log")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bpd: error: {tmp_path / 'cx'}: a classical controller designed for rig my-furuta, not for rig "
                   "rotary-pendulum as its YAML is now: export it again (bpd classical export --rig rotary-pendulum)"]
    assert not (tmp_path / "log").exists()
    _rig(tmp_path, arm__length=0.1, limits__action=10.0)  # the same rig's YAML, edited since the export
    with pytest.raises(BpdError, match=re.escape(f"designed for rig my-furuta, not for rig my-furuta as its YAML is "
                                                 f"now: export it again (bpd classical export --rig {mine})")):
        check_designed_for(tmp_path / "cx", load_rig(mine))
    check_designed_for(tmp_path / "log", load_rig(mine))  # no export there (or a learned one): nothing to say
    # a rig that is no rotary pendulum: 'export it again (bpd classical export --rig gym-inverted-pendulum)' was said,
    # which that command refuses (the controller is designed for rotary pendulum rigs only)
    said = (f"{tmp_path / 'cx'}: a classical controller of rig my-furuta, a rotary pendulum's (plant furuta), not of "
            f"rig gym-inverted-pendulum (plant gym-inverted-pendulum): give --rig {mine}")
    with pytest.raises(BpdError, match=re.escape(said) + "$"):
        check_designed_for(tmp_path / "cx", load_rig("gym-inverted-pendulum"))


def test_a_classical_export_is_evaluated_only_in_its_own_rigs_environment(tmp_path, capsys):
    """`bpd evaluate` of the rotary pendulum's classical export with --env of the cart-pole swing-up (the same 4
    observations and 1 action) or of a rotary rig of other constants ran it and printed a return (-22.5 on the
    cart-pole: the cart's metres read as the arm's radians) without a word, where hil run, rig sim and firmware
    build refuse it. Now one line each; the rig's randomised environment (its own plant, varied) is taken."""
    from bpd_app.cli import main
    from firmware_host.rig.classical import export_classical

    export_classical("rotary-pendulum", tmp_path / "cx")
    cx = str(tmp_path / "cx")
    mine = _rig(tmp_path, arm__length=0.1, limits__action=12.0)
    for env, said in [
        ("firmware_host.rig:bpd/desktop-cartpole-swingup-v0", f"bpd: error: {cx}: a classical controller of rig "
         "rotary-pendulum, a rotary pendulum's (plant furuta): firmware_host.rig:bpd/desktop-cartpole-swingup-v0 is no "
         "rotary pendulum rig's environment; evaluate it in its own, firmware_host.rig:bpd/rotary-pendulum-v0"),
        (f"rig:{mine}", f"bpd: error: {cx}: a classical controller designed for rig rotary-pendulum, not for rig "
         f"my-furuta (rig:{mine}) as its YAML is now: evaluate it in firmware_host.rig:bpd/rotary-pendulum-v0, or "
         f"export one for this rig (bpd classical export --rig {mine})")]:
        assert main(["evaluate", cx, "--env", env, "--episodes", "1"]) == 1
        assert capsys.readouterr().err.strip().splitlines() == [said]
    assert main(["evaluate", cx, "--env", "firmware_host.rig:bpd/rotary-pendulum-dr-v0", "--episodes", "1",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["return_mean"] > 0


def test_a_handover_region_past_the_lqrs_catch_is_refused(tmp_path):
    """Known answer: the learned policy acts inside handover.bounds and the classical controller takes back outside;
    the YAML's alpha bound of 0.7 rad is beyond the LQR's 30 degree catch (0.524 rad), so a take-back between the two
    would be by the energy swing-up. The hand-over export says so in one line and writes nothing; the shipped rig's
    0.5 rad, and a classical export not for hand-over, are taken."""
    from firmware_host.rig.classical import HANDOVER_PREFIX, export_classical

    wide = _rig(tmp_path, handover__bounds=[1.5, 0.7, 10.0, 10.0])
    with pytest.raises(BpdError, match=re.escape("handover.bounds lets the learned policy act out to |alpha| 0.7 rad, "
                                                 "beyond the LQR's catch (30 deg, 0.524 rad)")):
        export_classical(wide, tmp_path / "wide", HANDOVER_PREFIX)
    assert not (tmp_path / "wide").exists()
    export_classical(wide, tmp_path / "plain")  # as the policy, there is no region to take back from
    export_classical("rotary-pendulum", tmp_path / "shipped", HANDOVER_PREFIX)


@pytest.mark.parametrize("changes, msg", [
    (dict(arm__length=1e-9), "the best gains leave a closed-loop pole at |z| 1.02"),
    (dict(pendulum__length=1e-12, pendulum__damping=0.0), "its model about upright overflows over one period: the "
     "pendulum falls from upright at e^(5.74e+06 t), against a period of 0.002 s"),
])
def test_a_rig_no_lqr_can_balance_is_one_line(tmp_path, capsys, changes, msg):
    """Known answers: an arm of 1e-9 m does not move the pendulum's pivot, so no voltage steers the pendulum (the
    design was exported, its closed loop unstable and its arm gain of the wrong sign); an undamped 1e-12 m
    pendulum falls from upright as e^(5.74e6 t) (above sqrt(3 g / 2 L), the arm giving way), which overflows its
    model over a 2 ms period, and the export ended in an internal error (ValueError: array must not contain infs
    or NaNs). Now one line each, and nothing written."""
    from bpd_app.cli import main

    assert main(["classical", "export", "--rig", _rig(tmp_path, **changes), "--out", str(tmp_path / "cx")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bpd: error: rig my-furuta: no LQR balances it: {msg}"), err
    assert err[0].endswith("; check its motor, arm and pendulum constants") and not (tmp_path / "cx").exists()


def test_a_classical_design_that_does_not_swing_up_its_rig_is_refused(tmp_path, capsys):
    """Known answer: the shipped rig on a 6 V supply (limits.action 6 where it is 10) gets a design whose energy
    swing-up, its constants a 10 V QUBE-Servo 2's, never brings the pendulum within a radian of upright (0 of 3
    nominal episodes). It was exported without a word, and every trial with it failed with nothing to say the design
    cannot work. Now one line saying so, with what the simulated runs found, and nothing written; the shipped rig's
    export says (and records) its 3 of 3, and a 15 cm pendulum's its 2 of 3 (a design that swings up at times is
    reported, not refused: the shipped rig's misses one swing-up in 30)."""
    from bpd_app.cli import main

    low = _rig(tmp_path, limits__action=6.0)
    assert main(["classical", "export", "--rig", low, "--out", str(tmp_path / "low")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "bpd: error: rig my-furuta: the energy swing-up + LQR designed from its YAML does not swing up and hold its "
        "simulated plant: 0 of 3 episodes upright within 0.2 rad for the last 1 s of 5 s (closest to upright 1."), err
    assert err[0].endswith(f"a teacher trained on this rig (--env rig:{low}) is the other way")
    assert not (tmp_path / "low").exists()
    assert main(["classical", "export", "--rig", "rotary-pendulum", "--out", str(tmp_path / "ok")]) == 0
    assert ("on its nominal plant 3 of 3 episodes upright within 0.2 rad for the last 1 s of 5 s (median "
            in capsys.readouterr().out)
    check = json.loads((tmp_path / "ok" / "export.json").read_text())["nominal_check"]
    assert (check["episodes"], check["successes"]) == (3, 3) and 0 < check["time_to_upright_median_s"] < 4
    longer = _rig(tmp_path, pendulum__length=0.15)
    assert main(["classical", "export", "--rig", longer, "--out", str(tmp_path / "p")]) == 0
    assert "; on its nominal plant 2 of 3 episodes upright within 0.2 rad" in capsys.readouterr().out


def test_the_rotary_benchmark_states_the_rigs_facts_from_its_yaml(tmp_path, monkeypatch, benchmark_script):
    """rotary.md's rate, success band and hold, episode length and best return, and the action steps of its
    quantisation conditions were typed into the benchmark (500 Hz, 0.2 rad, 1 s, 5 s, 1.5 per tick, 20 V): a rig
    YAML changed since would have been benchmarked and described as it was. They are now the YAML's; the committed
    table reads the same."""
    import json

    rot = benchmark_script("rotary_benchmark")
    assert rot.ACTION_RANGE == 20.0 and dict(rot.CONDITIONS)["action 8-bit"] == {"action_step": 20.0 / 255}
    res = json.loads((ROOT / "benchmarks/results/rotary.json").read_text())
    robust = json.loads((ROOT / "benchmarks/results/robustness.json").read_text())
    assert rot.markdown(res, robust) == (ROOT / "benchmarks/results/rotary.md").read_text()
    other = _rig(tmp_path, period_us=1000, max_episode_steps=3000, task_spec__upright_band=0.1,
                 task_spec__hold_s=2.0, task_spec__energy_bonus=None)
    monkeypatch.setattr(rot, "SPEC", load_rig(other))
    md = rot.markdown({"command": "c", "controllers": {}, "hil": {"x": []}})
    assert md.startswith("# Rotary pendulum: swing-up and balance (rotary-pendulum, 1000 Hz)\n")
    assert ("Success: upright within 0.1 rad for the last 2 s of a 3 s episode started hanging. Return: the env's "
            "reward summed (at most 1 per tick, 3000 per episode).") in md
    assert "## Hardware-in-the-loop at 1000 Hz" in md


def test_results_md_states_the_rotary_rigs_facts_from_its_yaml_and_the_design(monkeypatch, benchmark_script):
    """docs/results.md's rotary section typed the rig's rate (500 Hz, twice), success rule (0.2 rad for the last
    second of 5 s), period (2 ms, and 2000 us in the share of it) and episode count (30, twice), and the LQR's catch
    (30 degrees): an edited YAML or design would have been described as it was. Known answers: with the rig at
    1 kHz, 0.1 rad held 2 s of 6000 ticks and a 20 degree catch, the rendered section says so."""
    docs = benchmark_script("render_docs")
    text = (ROOT / "docs/results.md").read_text()
    assert ("rig at 500 Hz, every episode\nstarted hanging, 30 nominal episodes per controller (success: upright "
            "within 0.2 rad for the last\n1 s of 5 s)") in text and "LQR catch within 30 degrees" in text
    real_yaml, real_constant = docs.yaml_file, docs.constant

    def rig_yaml(rel: str):
        raw = real_yaml(rel)
        if rel == "firmware_host/rig/rigs/rotary-pendulum.yaml":
            raw.update(period_us=1000, max_episode_steps=6000)
            raw["task_spec"].update(upright_band=0.1, hold_s=2.0)
        return raw

    monkeypatch.setattr(docs, "yaml_file", rig_yaml)
    monkeypatch.setattr(docs, "constant", lambda s: 20.0 if s == "firmware_host.rig.classical:SWITCH_DEG"
                        else real_constant(s))
    out = docs.render()["docs/results.md"]
    assert ("rig at 1000 Hz, every episode\nstarted hanging, 30 nominal episodes per controller (success: upright "
            "within 0.1 rad for the last\n2 s of 6 s)") in out
    assert "LQR catch within 20 degrees" in out and "\n  1000 Hz on the simulated rig" in out
    assert "% of the 1 ms period)" in out and "of 30 episodes (" in out
