"""HIL host against the simulated rig over a pseudo-terminal: full episodes in host and device mode,
the Gymnasium env over serial, handshake refusals, and a fault table that must end with a clear
one-line error, a non-zero exit and the logs intact."""

import json
import signal
import subprocess
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from hil.ticklog import read_ticks
from tests.conftest import BPD, run_bpd
from tests.test_rig_pty import FIX, Rig


@pytest.fixture
def rig(tmp_path):
    rigs = []

    def make(*args):
        rigs.append(Rig(tmp_path, "--rig", "gym-inverted-pendulum", *args))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def hil(port, out, *args, check=True):
    return run_bpd("hil", "run", "--port", port, "--rig", "gym-inverted-pendulum", "--policy", str(FIX),
                   "--out", str(out), *args, check=check, timeout=120)


def summary(out):
    return json.loads((Path(out) / "summary.json").read_text())


def rows(out):
    return [l for l in (Path(out) / "ticks.csv").read_text().splitlines() if not l.startswith("#")][1:]


@pytest.mark.parametrize("mode", ["host", "device"])
def test_full_episodes(rig, tmp_path, mode):
    r = rig("--lockstep", "--policy", str(FIX))
    hil(r.path, tmp_path / "log", "--mode", mode, "--episodes", "1", "--no-plots")
    s = summary(tmp_path / "log")
    assert s["ended"] == "complete"
    assert [(e["return"], e["length"], e["ended"]) for e in s["episodes"]] == [(1000.0, 1000, "max steps")]
    assert len(rows(tmp_path / "log")) == 1000
    assert s["device_dropped"]["rx_dropped"] == 0  # the device read every frame the host sent
    assert not any(s["config"][k].startswith("/") for k in ("policy", "out"))  # no machine paths in results
    t = s["timing"]
    assert t["ticks"] == 1000 and t["period_us"]["median"] == 40000
    if mode == "host":
        # a miss is a host step over the 40 ms period: timing, which a shared machine does not promise;
        # what is tested is that misses are counted alike in the summary, the episode and the tick log
        assert t["host_step_us"]["n"] == 1000 and t["deadline_misses"] < 100
        assert t["deadline_misses"] == s["episodes"][0]["deadline_misses"] == sum(
            int(r["deadline_miss"]) for r in read_ticks(tmp_path / "log" / "ticks.csv"))
    else:
        assert t["infer_ns"]["n"] == 1000


def test_report_rerenders_plots(rig, tmp_path):
    r = rig("--lockstep")
    hil(r.path, tmp_path / "log", "--steps", "50")
    for p in (tmp_path / "log").glob("*.png"):
        p.unlink()
    out = run_bpd("hil", "report", str(tmp_path / "log")).stdout
    assert "timing_histograms.png" in out and (tmp_path / "log" / "trajectory_ep0.png").stat().st_size > 1000


def test_gymnasium_env_over_serial(rig):
    from export.c_export import CPolicy
    from hil.env import SerialRigEnv

    r = rig("--lockstep")
    env = SerialRigEnv(r.path, "gym-inverted-pendulum")
    pol = CPolicy(FIX)
    try:
        obs, _ = env.reset(seed=1)
        ret, done = 0.0, False
        while not done:
            obs, rew, term, trunc, _ = env.step(pol.act(obs))
            ret += rew
            done = term or trunc
        assert ret == 1000.0
        env.reset(seed=2)
        with pytest.raises(ValueError, match=r"non-finite action \[nan\]: the rig was stopped"):
            env.step(np.array([np.nan]))
        env.link.configure(env.period, 5, "host", 3.0, 1.0, 0.2)  # rejected if the device were still running
        with pytest.raises(gym.error.ResetNeeded):
            env.step(np.array([0.0]))
    finally:
        env.close()


def test_gymnasium_env_names_a_device_of_another_period_before_any_config(rig):
    """SerialRigEnv with a period the device does not run: one line naming both periods and the fix when it opens, as
    `hil run` says; its reset's CONFIG was rejected, and the rejection blamed on the action limit."""
    from hil.env import SerialRigEnv
    from hil.link import LinkError

    r = rig("--lockstep")
    with pytest.raises(LinkError, match=r"^the device's control period is 40000 us, the trial's 30000 us: leave out "
                                        r"--period-us \(the device runs the rig's period\)$"):
        SerialRigEnv(r.path, "gym-inverted-pendulum", period_us=30000)
    env = SerialRigEnv(r.path, "gym-inverted-pendulum")  # the port was closed behind the refusal: it opens again
    env.close()


def test_gymnasium_env_closes_its_port_when_the_device_does_not_answer(monkeypatch):
    import hil.env
    from hil.link import LinkError

    closed = []

    class Silent:
        def __init__(self, port, baud):
            pass

        def handshake(self):
            raise LinkError("no HELLO from the device within 1.0 s")

        def close(self):
            closed.append(True)

    monkeypatch.setattr(hil.env, "DeviceLink", Silent)
    with pytest.raises(LinkError, match="no HELLO"):
        hil.env.SerialRigEnv("/dev/ttyACM0", "gym-inverted-pendulum")
    assert closed == [True]


def test_refuses_mismatched_model_hash(rig, tmp_path):
    """A valid export of another network for the same rig: the device's model hash tells them apart."""
    from export.export import ExportConfig, run_export
    from tests.test_bad_input import _hand_teacher

    r = rig("--lockstep", "--policy", str(FIX))
    _hand_teacher(tmp_path / "teacher.npz")
    other = tmp_path / "other_export"
    run_export(ExportConfig(source=str(tmp_path / "teacher.npz"), out=str(other), episodes=0, parity_samples=200))
    p = run_bpd("hil", "run", "--port", r.path, "--rig", "gym-inverted-pendulum", "--policy", str(other),
                "--mode", "device", "--out", str(tmp_path / "log"), check=False)
    assert p.returncode == 1 and "flash the matching firmware" in p.stderr and len(p.stderr.splitlines()) == 1


def test_handshake_refuses_another_protocol_version():
    """A device of another protocol version: the host refuses to go on after its INFO, and a device's
    restart (another boot counter in an INFO) ends the session with a line naming it."""
    from firmware_host.wire.codec import encode
    from firmware_host.wire.spec import PROTOCOL_VERSION as V
    from hil.link import DeviceLink, DeviceRestarted, LinkError

    fields = dict(fw_major=0, fw_minor=5, obs_dim=4, act_dim=1, caps=1, period_us=40000, model_hash=[0] * 8,
                  rx_dropped=0, actions_dropped=0, selftest=0, cycle_hz=10**9)
    link = DeviceLink("loop://")  # what the host writes comes back, and the INFO written first
    link.ser.write(encode("info", 0, protocol=V - 1, boot=1, **fields))
    with pytest.raises(LinkError, match=f"protocol version mismatch: device {V - 1}, host {V}"):
        link.handshake(timeout=0.5, tries=1)
    link.ser.write(encode("info", 0, protocol=V, boot=1, **fields))
    assert link.handshake(timeout=0.5, tries=1)["boot"] == 1
    link.ser.write(encode("info", 0, protocol=V, boot=2, **fields))
    with pytest.raises(DeviceRestarted, match=r"restarted \(boot 1 -> 2\)"):
        link.next_states(0.5)
    link.close()


def test_refuses_device_mode_without_on_device_policy(rig, tmp_path):
    r = rig("--lockstep")
    p = hil(r.path, tmp_path / "log", "--mode", "device", check=False)
    assert p.returncode == 1 and "no on-device policy (device mode impossible): flash it with an image built from " \
        "the export (bpd firmware build EXPORT --board ..., then bpd firmware flash), or run --mode host" in p.stderr


FAULTS = [
    # (name, rig args, hil args, expected message or None when the trial may finish)
    ("latency", ["--period-us", "20000", "--link-delay-ms", "15"], [], "device fault: watchdog"),
    ("stall", ["--period-us", "20000", "--stall-at", "1.0", "--stall-for", "5"], [], "stalled"),
    ("disconnect", ["--period-us", "20000", "--disconnect-at", "1.0"], [], None),
    ("restart", ["--period-us", "20000", "--restart-at", "1.0"], [], "the device restarted (boot 1 -> 2)"),
    # lossy links in lockstep: a STATE lost on the way is never answered, so the rig waits its action timeout
    # for it; under the host's stall timeout (1 s), or the trial ends as a stall
    ("dropped bytes", ["--lockstep", "--action-timeout", "0.3", "--drop-rate", "0.002", "--seed", "5"],
     ["--steps", "400"], None),
    ("corruption", ["--lockstep", "--action-timeout", "0.3", "--corrupt-rate", "0.002", "--seed", "6"],
     ["--steps", "400"], None),
]


@pytest.mark.parametrize("name,rig_args,hil_args,message", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_table(rig, tmp_path, name, rig_args, hil_args, message):
    r = rig(*rig_args)
    out = tmp_path / "log"
    p = hil(r.path, out, "--period-us", "40000" if "--lockstep" in rig_args else "20000", "--episodes", "3",
            "--steps", "300", "--no-plots", *hil_args, check=False)
    s = summary(out)
    n = len(rows(out))
    assert n > 0  # logs intact up to the fault
    assert s["timing"]["ticks"] == n
    if name in ("dropped bytes", "corruption"):
        assert s["bad_frames"]["host_parser"] > 0 or p.returncode != 0
    if p.returncode != 0 or message:
        assert p.returncode == 1, p.stderr
        line = p.stderr.strip().splitlines()
        assert len(line) == 1 and line[0].startswith("bpd: error:") and "logs kept in" in line[0]
        assert s["ended"].startswith("error")
        # the summary says what became of the stop, as the line does: sent, or not (the link gone)
        from hil.trial import STOP_FAILED
        stopped = STOP_FAILED if STOP_FAILED in p.stderr else "stop sent"
        assert s["ended"].endswith(f"; {stopped}"), s["ended"]
    if message:
        assert message in p.stderr
    if name == "disconnect":
        assert p.returncode == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_ctrl_c_stops_and_keeps_logs(rig, tmp_path, sig):
    """Ctrl-C, and SIGTERM or SIGHUP (a supervisor stopping the trial, its terminal closing), as Ctrl-C: the stop
    goes out, summary.json is written, one line and the signal's exit status."""
    r = rig("--period-us", "20000")
    out = tmp_path / "log"
    proc = subprocess.Popen([BPD, "hil", "run", "--port", r.path, "--rig", "gym-inverted-pendulum", "--policy",
                             str(FIX), "--out", str(out), "--period-us", "20000", "--episodes", "5", "--no-plots"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while (not (out / "ticks.csv").exists() or len(rows(out)) < 20) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    kept = f": stop sent; logs kept in {out}"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and err.strip() == "bpd: interrupted" + kept, err
    else:
        assert proc.returncode == 128 + sig and err.strip() == f"bpd: stopped ({sig.name})" + kept, err
    s = summary(out)
    assert s["ended"] == f"interrupted ({'Ctrl-C' if sig == signal.SIGINT else sig.name}): stop sent"
    assert len(rows(out)) >= 20
    # the episode the stop cut short is in the summary with its ticks so far (it used to be left out)
    last = s["episodes"][-1]
    assert last["ended"] == f"cut short: the trial ended ({s['ended']})"
    assert last["length"] == sum(1 for r in read_ticks(out / "ticks.csv") if int(r["episode"]) == last["episode"]) > 0
    assert [e["episode"] for e in s["episodes"]] == list(range(last["episode"] + 1))
    # the device was told to stop: a new session finds it idle and accepts a configuration
    from hil.link import DeviceLink

    link = DeviceLink(r.path)
    try:
        link.handshake()
        link.configure(20000, 5, "host", 3.0, 1.0, 0.2)  # rejected if the device were still running
    finally:
        link.close()


def test_tick_log_from_before_the_device_timing_still_reads(tmp_path):
    """A ticks.csv written before protocol 4 (no policy_cycles, device_jitter_us, device_jitter_max_us) reads,
    and its summary has no device timing."""
    from hil.ticklog import DEVICE_TIMING, TIMING, read_ticks, timing_summary

    names = [n for n, _ in TIMING if n not in DEVICE_TIMING] + ["obs0", "action0"]
    row = ["40000" if n == "device_period_us" else "0" for n in names]
    (tmp_path / "ticks.csv").write_text(",".join(names) + "\n" + ",".join(row) + "\n")
    assert len(read_ticks(tmp_path / "ticks.csv")) == 1
    t = timing_summary(tmp_path / "ticks.csv", 40000)
    assert t["ticks"] == 1 and t["policy_cycles"] == {"n": 0} and t["device_jitter_us"] == {"n": 0}


def test_the_trial_line_calls_the_policy_counter_cycles_on_a_board_only(monkeypatch, capsys):
    """policy_cycles counts at the device's INFO cycle_hz: a core's cycles on a board, nanoseconds of the host clock
    on the simulated rig, a SysTick-derived count under QEMU (docs/protocol.md rule 16). The summary line names
    them cycles on a board alone."""
    import argparse

    import bpd.config
    import hil.trial
    from hil.cli import _run

    t = {"ticks": 100, "host_step_us": {"n": 0}, "infer_ns": {"n": 100, "median": 922.0},
         "policy_cycles": {"n": 100, "median": 155.0}, "device_jitter_us": {"n": 100, "max": 3.0},
         "achieved_rate_hz": 50.0, "target_rate_hz": 50.0, "deadline_misses": 0, "deadline_miss_rate": 0.0}
    monkeypatch.setattr(hil.trial, "run_trial", lambda cfg: {"timing": t, "episodes": []})
    monkeypatch.setattr(bpd.config, "from_namespace", lambda cls, ns: ns)
    for port, hz, named in (("sim", None, False), ("pil", 168_000_000, False), ("/dev/ttyACM0", 168_000_000, True),
                            ("/dev/pts/3", 1_000_000_000, False)):  # the last: a pty of `bpd rig sim`, host clock
        monkeypatch.setattr(hil.trial, "run_trial", lambda cfg, hz=hz: {"timing": t, "episodes": [],
                                                                         "device": {"cycle_hz": hz}})
        _run(argparse.Namespace(port=port, out="o"))
        line = capsys.readouterr().out
        assert ("on-device inference median 922 instructions" if port == "pil" else
                "on-device inference median 922 ns") in line, port  # QEMU counts instructions (rule 16)
        assert ("(155 cycles)" in line) == named, port
    # one tick has no period to take a rate from (`--steps 1`): a dash, where the line was a TypeError
    monkeypatch.setattr(hil.trial, "run_trial", lambda cfg: {"timing": t | {"ticks": 1, "achieved_rate_hz": None},
                                                             "episodes": []})
    _run(argparse.Namespace(port="sim", out="o"))
    assert capsys.readouterr().out.startswith("rate - Hz (target 50.0)")


def test_a_policy_of_other_sizes_than_the_rigs_is_refused_before_anything_starts(monkeypatch, tmp_path):
    """An export mapping 3 observations to 1 action on a 4 -> 1 rig: one clear error from the checks, before a rig or
    device starts (the device would only say that it could not start)."""
    import pytest

    import hil.trial
    from bpd.errors import BpdError
    from hil.policy import HostPolicy
    from hil.trial import HilRunConfig, check_trial

    monkeypatch.setattr(hil.trial, "load_host_policy",
                        lambda path, runtime: HostPolicy(lambda o: o, 3, 1, None, runtime, str(path)))
    cfg = HilRunConfig(port="sim", rig="gym-inverted-pendulum", policy="exp", out=str(tmp_path / "log"), runtime="c")
    with pytest.raises(BpdError, match="maps 3 observations to 1 actions, rig gym-inverted-pendulum 4 to 1"):
        check_trial(cfg)
    monkeypatch.setattr(hil.trial, "load_host_policy",
                        lambda path, runtime: HostPolicy(lambda o: o, 4, 1, None, runtime, str(path)))
    spec, pol = check_trial(cfg)
    assert (pol.obs_dim, pol.act_dim) == (spec.obs_dim, spec.act_dim) == (4, 1)



def test_port_pil_with_an_onnx_file_names_the_export_directory_it_needs(tmp_path):
    """`--port pil --policy policy.onnx` (host mode runs an .onnx): `bpd rig pil` was started without a policy and
    its 'give --policy EXPORT_DIR ... or --elf IMAGE' came back, naming an option `bpd hil run` does not have; now
    the trial is refused before QEMU, with the export directory the file is in where it is one."""
    import shutil

    from bpd.errors import BpdError
    from hil.trial import HilRunConfig, check_trial

    lone = tmp_path / "lone.onnx"
    shutil.copyfile(FIX / "policy.onnx", lone)
    for policy, says in ((FIX / "policy.onnx", f"give --policy {FIX}$"), (lone, "give the directory `bpd export` "
                                                                                "wrote$")):
        cfg = HilRunConfig(port="pil", rig="gym-inverted-pendulum", policy=str(policy), out=str(tmp_path / "log"))
        with pytest.raises(BpdError, match=rf"^--port pil runs the firmware image built from an export directory, "
                                           rf"not {policy}: {says}"):
            check_trial(cfg)
    assert not (tmp_path / "log").exists()


def test_port_sim_device_mode_with_an_onnx_file_names_the_export_directory_it_needs(tmp_path):
    """`--port sim --mode device --policy export/policy.onnx`: the simulated device was started without a policy (only
    a directory is built into it) and the trial failed with 'the device has no on-device policy'; now it is refused
    before any rig starts, with the export directory to give. Host mode runs the .onnx file as before."""
    from bpd.errors import BpdError
    from hil.trial import HilRunConfig, check_trial

    for mode in ("device", "handover"):
        cfg = HilRunConfig(port="sim", rig="rotary-pendulum", policy=str(FIX / "policy.onnx"), mode=mode,
                           classical=str(tmp_path) if mode == "handover" else None, out=str(tmp_path / "log"))
        with pytest.raises(BpdError, match=rf"^--mode {mode} runs the policy on the simulated device, built from an "
                                           rf"export directory, not {FIX / 'policy.onnx'}: give --policy {FIX} \(or "
                                           "--mode host"):
            check_trial(cfg)
    assert not (tmp_path / "log").exists()
    cfg = HilRunConfig(port="sim", rig="gym-inverted-pendulum", policy=str(FIX / "policy.onnx"),
                       out=str(tmp_path / "log"))
    assert check_trial(cfg)[1].obs_dim == 4


def test_a_policy_trained_on_another_plant_of_the_same_sizes_is_named_not_refused(monkeypatch, tmp_path, capsys):
    """A cart-pole policy (4 -> 1) on gym-inverted-pendulum (4 -> 1): the trial runs and a note says whose plant the
    policy was trained on; InvertedPendulum-v5's policy (the rig's `envs`) and the rig's own env pass silently."""
    import hil.trial
    from firmware_host.rig import load_rig
    from hil.policy import HostPolicy
    from hil.trial import HilRunConfig, check_trial

    cfg = HilRunConfig(port="sim", rig="gym-inverted-pendulum", policy="exp", out=str(tmp_path / "log"), runtime="c")
    for env, noted in (("firmware_host.rig:bpd/desktop-cartpole-v0", True), ("InvertedPendulum-v5", False),
                       ("bpd/gym-inverted-pendulum-v0", False), (None, False)):
        monkeypatch.setattr(hil.trial, "load_host_policy", lambda path, runtime, env=env: HostPolicy(
            lambda o: o, 4, 1, None, runtime, str(path), env))
        check_trial(cfg)
        err = capsys.readouterr().err
        assert ("bpd: note: exp was trained on firmware_host.rig:bpd/desktop-cartpole-v0, not on rig "
                "gym-inverted-pendulum's plant (InvertedPendulum-v5, bpd/gym-inverted-pendulum-v0)" in err) == noted, (
                    env, err)
    spec = load_rig("rotary-pendulum")  # a swing-up rig: its randomised variant too
    assert spec.trained_here("firmware_host.rig:bpd/rotary-pendulum-dr-v0") and not spec.trained_here("Pendulum-v1")
    assert load_rig("desktop-cartpole").policy_envs == {"bpd/desktop-cartpole-v0"}
    own = tmp_path / "mine.yaml"  # a rig of one's own names no registered environment: nothing to say otherwise
    own.write_text(load_rig("desktop-cartpole").path.read_text().replace("name: desktop-cartpole", "name: mine"))
    assert load_rig(own).policy_envs == set() and load_rig(own).trained_here("InvertedPendulum-v5")


def test_a_device_of_another_period_is_named_as_another_rigs_firmware(rig, tmp_path):
    """A device built for another period than the trial's (another rig's firmware, or a --period-us that does not
    match): one line naming both periods and the fix, before any CONFIG the device would refuse."""
    r = rig("--period-us", "20000")
    p = hil(r.path, tmp_path / "a", "--no-plots", check=False)
    assert p.returncode == 1
    line = p.stderr.strip().splitlines()
    assert len(line) == 1 and "the device's control period is 20000 us, the trial's 40000 us" in line[0]
    assert "give --period-us 20000, or build the device's firmware for rig gym-inverted-pendulum" in line[0]
    p = hil(r.path, tmp_path / "b", "--no-plots", "--period-us", "30000", check=False)
    assert p.returncode == 1 and "the trial's 30000 us: give --period-us 20000" in p.stderr
    r2 = rig()  # the rig's own period on the device, another asked for
    p = hil(r2.path, tmp_path / "c", "--no-plots", "--period-us", "30000", check=False)
    assert p.returncode == 1 and "the device's control period is 40000 us, the trial's 30000 us: leave out " \
        "--period-us" in p.stderr


def _trial_of_an_edited_yaml(rig, tmp_path, was: str, now: str):
    """A 20-step trial on the simulated gym pendulum given its YAML with `was` replaced by `now` (the firmware built
    from the rig's own): the rig, the trial's directory and the error's lines (the trial must fail)."""
    from firmware_host.rig import load_rig

    r = rig("--lockstep")
    edited = tmp_path / "gym-inverted-pendulum.yaml"
    edited.write_text(load_rig("gym-inverted-pendulum").path.read_text().replace(was, now))
    out = tmp_path / "log"
    p = run_bpd("hil", "run", "--port", r.path, "--rig", str(edited), "--policy", str(FIX), "--out", str(out),
                "--no-plots", "--steps", "20", check=False, timeout=120)
    assert p.returncode == 1
    return r, out, p.stderr.strip().splitlines()


def test_a_rig_yaml_with_a_wider_action_limit_than_the_devices_firmware_is_refused_in_one_line(rig, tmp_path):
    """A rig YAML edited since the firmware was built (a bigger motor's action limit, 10 times the rig's): the device
    refuses the CONFIG (docs/protocol.md, rule 9) and the trial ends with one line naming the limits and the fix,
    where the device had taken the wider limit and applied any action up to it."""
    r, out, line = _trial_of_an_edited_yaml(rig, tmp_path, "  action: 3.0", "  action: 30.0")
    assert len(line) == 1 and line[0].startswith("bpd: error: the device rejected the configuration (action limit "
                                                 "30, position limit 1, angle limit 0.2, watchdog 5 ticks): its "
                                                 "firmware takes an action limit and a watchdog up to its rig's own "
                                                 "only, a position limit short of its rig's track; build and flash it "
                                                 "for this rig YAML"), line
    assert summary(out)["ended"].startswith("error: the device rejected the configuration") and not rows(out)
    # the refused trial ticked nothing: the next one, with the rig's own YAML, may take its directory over
    p = run_bpd("hil", "run", "--port", r.path, "--rig", "gym-inverted-pendulum", "--policy", str(FIX), "--out",
                str(out), "--no-plots", "--steps", "20", check=False, timeout=120)
    assert p.returncode == 0, p.stderr
    assert summary(out)["ended"] == "complete" and len(rows(out)) == 20
    p = run_bpd("hil", "run", "--port", r.path, "--rig", "gym-inverted-pendulum", "--policy", str(FIX), "--out",
                str(out), "--no-plots", "--steps", "20", check=False, timeout=120)
    assert p.returncode == 1 and p.stderr.strip() == f"bpd: error: {out}: holds a trial already; choose another " \
        "--out (a trial never writes into an existing one)"


def test_a_rig_yaml_with_a_longer_watchdog_than_the_devices_firmware_is_refused_in_one_line(rig, tmp_path):
    """A rig YAML whose watchdog is a tick longer than the one the device's firmware was built with: the device
    refuses the CONFIG (a host may shorten the watchdog, never lengthen it) and the trial ends with one line, where
    the device had taken any watchdog up to 65,535 ticks and run the actuator on that long after the host went
    silent."""
    _, out, line = _trial_of_an_edited_yaml(rig, tmp_path, "watchdog_ticks: 5", "watchdog_ticks: 6")
    assert len(line) == 1 and line[0].startswith("bpd: error: the device rejected the configuration (action limit 3, "
                                                 "position limit 1, angle limit 0.2, watchdog 6 ticks): its firmware "
                                                 "takes an action limit and a watchdog up to its rig's own only"), line
    assert not rows(out)


def test_configure_refuses_a_config_past_the_rigs_bounds_before_sending_it():
    """Given the rig (spec), the host checks a CONFIG against the bounds a device built for that rig holds it to
    before it sends anything: a watchdog longer than the rig's, a position limit at or past its track, an action limit
    above its own, a limit not positive and finite, each one line; the rig's own values and a limit just short of the
    track pass, and a rig without a track takes any finite position limit."""
    import math

    from firmware_host.rig import load_rig
    from hil.link import DeviceLink, LinkError, check_config

    gym, cart = load_rig("gym-inverted-pendulum"), load_rig("desktop-cartpole")
    below = float(np.nextafter(np.float32(0.25), np.float32(0.0)))
    cases = [(gym, dict(watchdog_ticks=6), "a watchdog of 6 ticks is longer than rig gym-inverted-pendulum's own (5): "
                                           "a host may shorten it, never lengthen it; the device would refuse it"),
             (gym, dict(watchdog_ticks=60000), "a watchdog of 60000 ticks is longer than rig gym-inverted-pendulum's "
                                               "own (5): a host may shorten it, never lengthen it; the device would "
                                               "refuse it"),
             (cart, dict(pos_limit=0.3), "the position limit 0.3 is not short of rig desktop-cartpole's track (+-0.25, "
                                         "its hard stops: the cart would stop only on them): the device would refuse "
                                         "it"),
             (cart, dict(pos_limit=0.25), "the position limit 0.25 is not short of rig desktop-cartpole's track"),
             (gym, dict(action_limit=30.0), "the action limit 30 is above rig gym-inverted-pendulum's own (3): a host "
                                            "may narrow it, never widen it; the device would refuse it"),
             (gym, dict(watchdog_ticks=0), "a watchdog of 0 ticks: no device takes it (1 tick at least)"),
             (gym, dict(angle_limit=math.nan), "the angle limit nan is not a positive finite number: no device takes "
                                               "it"),
             (gym, dict(pos_limit=1e300), "the position limit 1e+300 is not a positive finite number")]
    link = DeviceLink("loop://")
    try:
        for spec, over, msg in cases:
            lim = spec.limits
            f = dict(period_us=0, watchdog_ticks=spec.watchdog_ticks, mode="host", action_limit=float(lim["action"]),
                     pos_limit=float(lim["position"]), angle_limit=float(lim["angle"])) | over
            with pytest.raises(LinkError) as e:
                link.configure(**f, spec=spec)
            assert str(e.value).startswith(msg) and "\n" not in str(e.value), (over, str(e.value))
            assert link.seq == 0 and link.ser.in_waiting == 0  # nothing sent
    finally:
        link.ser.close()
    check_config(cart, 10, 3.0, below, 1e3)  # the rig's own watchdog and action limit, a float32 step short of track
    check_config(cart, 1, 0.5, 0.1, 12.0)  # shorter, narrower
    check_config(gym, 5, 3.0, 1e30, 1e30)  # no track: any finite position limit (and angle limit)


def test_only_a_trial_ended_before_its_first_tick_is_taken_over(tmp_path):
    """A directory is taken over only where its trial wrote its summary, ended other than complete and ticked
    nothing: not one still beginning (no summary yet), whose tick log the next trial would delete under it."""
    from hil.ticklog import TickLog
    from hil.trial import untouched_trial

    def trial(name, summary):
        d = tmp_path / name
        d.mkdir()
        TickLog(d / "ticks.csv", 4, 1).close()
        if summary is not None:
            (d / "summary.json").write_text(json.dumps(summary))
        return d

    refused = {"ended": "error: the device rejected the configuration", "timing": {"ticks": 0}}
    assert untouched_trial(trial("refused", refused))
    assert not untouched_trial(trial("beginning", None))
    assert not untouched_trial(trial("complete", refused | {"ended": "complete"}))
    assert not untouched_trial(trial("ticked", refused | {"timing": {"ticks": 3}}))
    (trial("more", refused) / "notes.txt").write_text("mine")
    assert not untouched_trial(tmp_path / "more")


class _Frame:
    def __init__(self, seq, obs, flags):
        self.seq = seq
        self.fields = {"obs": obs, "flags": flags, "action": [0.0], "t_us": 1000 * seq, "rtt_us": 0, "infer_ns": 0,
                       "policy_cycles": 0, "jitter_us": 0, "jitter_max_us": 0}


class _ScriptedLink:
    """A device that sends the given observations one STATE each, running and never stopping by itself (a device
    whose own limit check failed): what the host's own check is for; or, from the tick `stop_at` on, flagged as the
    device's limit stop (or the flag `stop` names)."""

    def __init__(self, states, stop_at: int | None = None, stop: str = "limit_stop"):
        self.states, self.sent, self.stop_at, self.stop = list(states), [], stop_at, stop

    def command(self, *a, **k):
        pass

    def configure(self, *a, **k):
        pass

    def next_states(self, timeout):
        from firmware_host.wire.spec import FLAGS

        seq = len(self.sent) + 1
        stopped = self.stop_at is not None and seq >= self.stop_at
        return [_Frame(seq, self.states.pop(0), FLAGS[self.stop] if stopped else FLAGS["running"])]

    def send(self, name, **fields):
        self.sent.append(fields["echo_seq"])

    def stop_and_zero(self):
        self.sent.append("stop")

    def wait_for(self, *a):
        pass


@pytest.mark.parametrize("mode", ["host", "device"])
@pytest.mark.parametrize("bad", [[0.0, float("nan"), 0, 0], [0.0, 0.5, 0, 0], [float("nan"), 0.0, 0, 0]],
                         ids=["nan-angle", "angle-past", "nan-position"])
def test_the_host_sends_no_action_for_a_state_past_its_limits(tmp_path, mode, bad):
    """The host's check of the limits, behind the device's: a state past them, or NaN (which no comparison finds past
    them), ends the episode with the stop and no action for it; the host used to answer it first, and a NaN went
    through."""
    from hil.ticklog import TickLog
    from hil.trial import HilRunConfig, _episode

    link = _ScriptedLink([[0.0, 0.0, 0, 0], [0.01, -0.05, 0, 0], bad, [0.0, 0.0, 0, 0]])
    pol = type("P", (), {"act": staticmethod(lambda o: np.zeros(1))})()
    rec = {"episode": 0, "return": 0.0, "length": 0, "ended": None, "deadline_misses": 0}
    log = TickLog(tmp_path / "ticks.csv", 4, 1)
    _episode(link, log, HilRunConfig(port="x", rig="r", policy="p", mode=mode, out=str(tmp_path)), rec, 40000, 10,
             {"action": 3.0, "position": 1.0, "angle": 0.2}, pol, 5, (0, 1))
    log.close()
    assert link.sent == [1, 2, "stop"]  # the two states inside the limits answered, then the stop
    assert (rec["ended"], rec["length"]) == ("limit (host stopped)", 3)


@pytest.mark.parametrize("obs, flag, ended", [
    ([0.0, 0.0, 0, 0], "limit_stop", "end stop (the device stopped within the limits: an end stop's input)"),
    ([0.0, 0.0, 0, 0], "estop", "e-stop (the device's emergency stop ended the run)"),
    ([0.0, 0.5, 0, 0], "estop", "e-stop (the device's emergency stop ended the run)"),
    ([0.0, 0.5, 0, 0], "limit_stop", "limit (device stopped)")], ids=["end-stop", "estop", "estop-beyond", "angle"])
def test_a_device_stop_is_said_to_be_its_inputs(tmp_path, obs, flag, ended):
    """A held emergency stop ends every run at its first tick: a trial's every episode ended 'limit (device stopped)'
    with the pendulum upright and the cart centred, nothing saying why; then 'stop input', an end stop or the
    emergency stop, the device giving both one flag. The emergency stop has its own flag now (protocol 6): it is
    named 'e-stop' wherever the observation is; a limit stop within the limits is an end stop's, past them the
    limit's."""
    from hil.ticklog import TickLog
    from hil.trial import HilRunConfig, _episode

    link = _ScriptedLink([obs, [0.0, 0.0, 0, 0]], stop_at=1, stop=flag)
    pol = type("P", (), {"act": staticmethod(lambda o: np.zeros(1))})()
    rec = {"episode": 0, "return": 0.0, "length": 0, "ended": None, "deadline_misses": 0}
    log = TickLog(tmp_path / "ticks.csv", 4, 1)
    _episode(link, log, HilRunConfig(port="x", rig="r", policy="p", mode="host", out=str(tmp_path)), rec, 40000, 10,
             {"action": 3.0, "position": 1.0, "angle": 0.2}, pol, 5, (0, 1))
    log.close()
    assert (rec["ended"], rec["length"], link.sent) == (ended, 1, ["stop"])


def test_a_stop_while_the_port_opens_is_held_until_the_trial_can_stop_the_device(rig, tmp_path, monkeypatch):
    """A SIGTERM that arrives while the trial opens the device's port, taken on another thread as a process with
    threads takes it, is held (bpd.process.HeldStops) and raised once the trial's guarded part begins: the stop goes
    out and summary.json is written, where before it escaped from the open with the port left to the watchdog."""
    import os
    import threading

    import bpd_app.cli as cli
    import hil.trial as trial

    r = rig("--period-us", "20000")
    out = tmp_path / "log"
    real = trial.DeviceLink
    opened: list = []

    class SlowToOpen(real):  # the signal comes in the middle of the open, from another thread
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            opened.append(self)
            t = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGTERM))
            t.start()
            t.join()
            time.sleep(0.3)  # Python would run the handler here, in the open, were the stop not held

    monkeypatch.setattr(trial, "DeviceLink", SlowToOpen)
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.getsignal(s) for s in sigs}
    rc = cli.main(["hil", "run", "--port", r.path, "--rig", "gym-inverted-pendulum", "--policy", str(FIX),
                   "--out", str(out), "--period-us", "20000", "--episodes", "1", "--no-plots"])
    assert {s: signal.getsignal(s) for s in sigs} == old  # every handler put back
    assert rc == 128 + signal.SIGTERM and len(opened) == 1
    assert summary(out)["ended"] == "interrupted (SIGTERM): stop sent"


def test_report_of_a_file_or_an_empty_directory_says_what_it_wants(tmp_path):
    """`bpd hil report LOG/ticks.csv` said 'no such log directory' of a file that is there, and an empty directory
    'no ticks.csv with rows'; each now says what was given and what the report reads."""
    from bpd.errors import BpdError
    from hil.report import render

    (tmp_path / "ticks.csv").write_text("episode\n")
    with pytest.raises(BpdError, match=r"ticks.csv: not a directory; give the trial's log directory \(its --out: "
                                       r"ticks.csv, summary.json\)$"):
        render(tmp_path / "ticks.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BpdError, match=r"empty: no ticks.csv, not a trial's log directory \(`bpd hil run --out`\)$"):
        render(tmp_path / "empty")
    with pytest.raises(BpdError, match=r"none: no such log directory$"):
        render(tmp_path / "none")
