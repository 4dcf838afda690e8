"""`bpd hil run --mode handover` (docs/protocol.md, rule 17) on the simulated rotary pendulum: the classical
controller swings it up, the learned policy (the rig's teacher, exported) catches it, the tick log says which
drove each tick and the summary counts the same; a device without hand-over, a rig without a handover block and
a misplaced --classical are refused in one line. The summary's known answers on a hand-made tick log."""

import math

import pytest

from firmware_host.wire.spec import FLAGS
from hil.ticklog import TickLog, handover_summary, read_ticks
from tests import test_handover, test_rig_pty
from tests.conftest import run_bpd
from tests.test_hil import summary
from tests.test_pil import needs_qemu

RIG, FIX = test_handover.RIG, test_rig_pty.FIX
exports = test_handover.exports  # fixture: the rig's teacher exported and the classical controller for hand-over
rig_factory = test_rig_pty.rig_factory  # fixture: `bpd rig sim ARGS` on a pty


def hil(port: str, out, policy, *args: str, rig: str = RIG.name, check: bool = False):
    return run_bpd("hil", "run", "--port", port, "--rig", rig, "--policy", str(policy), "--mode", "handover",
                   "--out", str(out), *args, check=check, timeout=300)


def one_line_error(p, *says: str) -> None:
    """A non-zero exit with one line on stderr, no traceback, saying each of says."""
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("bpd: error:"), p.stderr
    for s in says:
        assert s in lines[0], lines[0]


def check_caught(out, stdout: str) -> None:
    """Classical ticks first (the swing-up from hanging), policy ticks at the end, upright; the `classical` column
    is the STATE flag; the summary's counts, first hand-over and take-backs are the log's, as is the printed line."""
    s = summary(out)
    assert s["ended"] == "complete" and s["config"]["mode"] == "handover"
    assert [(e["length"], e["ended"]) for e in s["episodes"]] == [(1500, "max steps")]
    rows = read_ticks(out / "ticks.csv")
    classical = [r["classical"] == "1" for r in rows]
    assert classical == [bool(int(r["flags"]) & FLAGS["classical"]) for r in rows]
    alpha = [abs(math.remainder(float(r["obs1"]), 2 * math.pi)) for r in rows]
    assert all(classical[:100]) and not any(classical[-500:])
    assert all(a > 2.0 for a in alpha[:50]) and all(a < 0.2 for a in alpha[-500:])  # hanging, then caught upright
    steps = [int(r["step"]) for r in rows]
    first = steps[classical.index(False)]
    backs = [steps[i] for i in range(1, len(rows)) if classical[i] and not classical[i - 1]]
    n = sum(classical)
    assert s["handover"] == {"classical_ticks": n, "policy_ticks": 1500 - n, "episodes": [
        {"episode": 0, "classical_ticks": n, "policy_ticks": 1500 - n, "first_handover": first, "take_backs": backs}]}
    assert (f"episode 0: ticks driven by the classical controller {n}, by the policy {1500 - n}; first hand-over at "
            f"tick {first}, ") in stdout


def test_handover_trial_swings_up_then_the_policy_catches(rig_factory, exports, tmp_path):
    """On a pty rig (`bpd rig sim --classical`); `bpd hil report` computes the same summary again."""
    teacher, classical = exports
    r = rig_factory("--rig", RIG.name, "--policy", str(teacher), "--classical", str(classical), "--lockstep")
    p = hil(r.path, tmp_path / "log", teacher, "--steps", "1500", "--no-plots", check=True)
    check_caught(tmp_path / "log", p.stdout)
    before = summary(tmp_path / "log")["handover"]
    rep = run_bpd("hil", "report", str(tmp_path / "log"))
    assert summary(tmp_path / "log")["handover"] == before
    assert "trajectory_ep0.png" in rep.stdout and "episode 0: ticks driven by the classical" in rep.stdout


def test_handover_trial_on_port_sim_with_classical(exports, tmp_path):
    """--port sim starts the simulated rig with --classical built in."""
    teacher, classical = exports
    p = hil("sim", tmp_path / "log", teacher, "--classical", str(classical), "--lockstep", "--steps", "1500",
            "--no-plots", check=True)
    check_caught(tmp_path / "log", p.stdout)


@needs_qemu
def test_handover_trial_on_port_pil(exports, tmp_path):
    """--port pil: the Cortex-M image with both controllers in QEMU."""
    teacher, classical = exports
    p = hil("pil", tmp_path / "log", teacher, "--classical", str(classical), "--steps", "1500", "--stall-timeout",
            "10", "--no-plots", check=True)
    check_caught(tmp_path / "log", p.stdout)


def test_handover_refused_by_a_device_without_it(rig_factory, exports, tmp_path):
    """A simulated rig started without --classical: INFO lacks caps bit 2; one line, logs kept, no tick run."""
    teacher, _ = exports
    r = rig_factory("--rig", RIG.name, "--policy", str(teacher), "--lockstep")
    p = hil(r.path, tmp_path / "log", teacher)
    one_line_error(p, "the device has no hand-over mode", "logs kept in")
    s = summary(tmp_path / "log")
    assert s["ended"].startswith("error: the device has no hand-over mode") and s["handover"] is None
    assert read_ticks(tmp_path / "log" / "ticks.csv") == []


@pytest.mark.parametrize("rig,args,says", [
    ("gym-inverted-pendulum", [], "rig gym-inverted-pendulum has no handover block"),
    (RIG.name, [], "--mode handover with --port sim needs --classical DIR"),
    (RIG.name, ["--classical", "CLASSICAL", "--mode", "device"], "--classical builds the simulated device"),
])
def test_handover_refused_before_any_rig_starts(exports, tmp_path, rig, args, says):
    """A rig without a handover block, a simulated device without its classical controller, --classical outside
    hand-over mode: refused in one line before a rig starts or a log is written."""
    teacher, classical = exports
    policy = FIX if rig == "gym-inverted-pendulum" else teacher
    p = hil("sim", tmp_path / "log", policy, *[str(classical) if a == "CLASSICAL" else a for a in args], rig=rig)
    one_line_error(p, says)
    assert not (tmp_path / "log").exists()


def test_handover_classical_needs_a_simulated_port(exports, tmp_path):
    teacher, classical = exports
    p = hil("/dev/ttyACM9", tmp_path / "log", teacher, "--classical", str(classical))
    one_line_error(p, "give it with --port sim or pil")
    assert not (tmp_path / "log").exists()


def test_handover_summary_known_answers(tmp_path):
    """Two hand-made episodes: classical 1 1 1 0 0 1 0 0 (first hand-over at tick 4, a take-back at 6), then
    0 0 1 (the policy from tick 1, a take-back at 3); a host or device log has no hand-over summary."""
    from hil.cli import handover_lines

    log = TickLog(tmp_path / "ticks.csv", 4, 1, handover=True)
    names = [n for n, _ in log.cols]
    for ep, seq in ((0, [1, 1, 1, 0, 0, 1, 0, 0]), (1, [0, 0, 1])):
        for step, c in enumerate(seq, 1):
            row = dict.fromkeys(names, 0) | {"episode": ep, "step": step, "classical": c,
                                             "flags": FLAGS["running"] | FLAGS["classical"] * c}
            log.add([row[n] for n in names])
    log.close()
    assert len(read_ticks(tmp_path / "ticks.csv")) == 11
    h = handover_summary(tmp_path / "ticks.csv")
    assert h == {"classical_ticks": 5, "policy_ticks": 6, "episodes": [
        {"episode": 0, "classical_ticks": 4, "policy_ticks": 4, "first_handover": 4, "take_backs": [6]},
        {"episode": 1, "classical_ticks": 1, "policy_ticks": 2, "first_handover": 1, "take_backs": [3]}]}
    assert handover_lines(h) == [
        "episode 0: ticks driven by the classical controller 4, by the policy 4; first hand-over at tick 4, "
        "a take-back at tick 6",
        "episode 1: ticks driven by the classical controller 1, by the policy 2; first hand-over at tick 1, "
        "a take-back at tick 3"]
    TickLog(tmp_path / "plain.csv", 4, 1).close()
    assert handover_summary(tmp_path / "plain.csv") is None
