"""`bpd rig check`: commissioning a rig before any policy runs on it.

With the policy off (host mode, the host sends the actions) and the motor limited to a share of the
rig's action limit, the checks run one by one, each only when the ones it needs passed:

1. link: the device answers, its sizes and period are the rig's;
2. sensors at rest (one second, action 0): noise of each position sensor (from one tick to the next) against
   the rig's `noise_std` and one count, whether the rig stood still (a pendulum still swinging, a cart
   moving with the motor at zero), the resting offsets (the pendulum hangs at +-pi, the cart within its
   position limit); the move and what needs it follow only a whole second still within the limit, since
   the model they are judged by starts at rest (a board's RESET moves nothing: the rig stands where the
   last check or trial left it);
3. a small commanded move (a push one way, then the other, then rest): each sensor must change where
   the rig's own model (the MuJoCo plant of the YAML, started at rest) says it moves, with the model's
   sign and scale; a motor that moves nothing, a stuck sensor, an encoder counting backwards, a motor
   of the other polarity, a wrong counts-per-unit and two encoders' cables swapped (each following the
   other's model travel) each have their signature (with one fault at a time: the motor reversed and
   both encoders reversed look alike, and the fix says so);
4. end stops (a rig with end stops in its wiring block, once the move passed and the cart's encoder read
   within its noise at rest): a slow drive to each;
   the firmware's position limit, opened to just beyond the stop, ends the run if the stop does not, and a stop
   short of halfway to the switch is another input's (the emergency stop pressed early, a switch on another pin);
   a drive held at the stop the last one reached is that switch blocking the wrong side (the stops swapped);
   then back to the centre, so that the next check, trial or power-on does not start at a stop;
5. loop timing: the device's tick period (median, p99) and overrun flags;
6. the emergency stop (with --estop, on a rig with one in its wiring, once the motor is proven and the cart back at
   the centre): pressed by the technician while the motor is held at zero, it must end the run; released, a new run
   must start and move the rig (a held emergency stop ends every run at its first tick); asked for and not run
   with no check above failed, the row fails: a check that passes with --estop has pressed it (hil/estop.py);
7. link quality: no frame the device's receiver lost (INFO's counters, before and after) and none the host
   could not parse; late actions (the device's other counter) and stale states each at most 1 % of the ticks
   (a late answer is both); the round trip reported, not judged.

It prints a pass/fail table with the fix of each failure and saves the result (`--checks`, one
JSON file per rig); `bpd hil run` refuses a rig whose last check failed (or whose YAML changed since a
failed check) unless given `--unchecked`. Interrupted (Ctrl-C, SIGTERM, SIGHUP), it stops the rig (the
device zeroes the motor), saves nothing and says so in one line. `--port sim` checks the simulated rig
on the bench, with one of its wiring faults (`--fault`, firmware_host/rig/sim.py FAULTS) or none.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpd.config import check_ranges, field
from bpd.errors import BpdError
from bpd.io import write_json
from bpd.process import HeldStops
from firmware_host.rig import RigSpec, load_rig
from firmware_host.rig.sim import FAULTS
from firmware_host.wire.spec import FLAGS, PROTOCOL_VERSION
from hil import estop
from hil.check_record import refuse_unchecked, rig_hash  # noqa: F401 - hil run's refusal lives there
from hil.link import DeviceLink
from hil.rig_session import Check, Session, model_response, push_profile, sensor_names, travel_ratio
from hil.trial import STOP_FAILED


@dataclass
class RigCheckConfig:
    port: str = field(help="serial port of the rig's board, or 'sim' for the simulated rig on the bench")
    rig: str = field(help="rig name or YAML (its wiring block names the fixes)")
    fault: str | None = field(None, help="with --port sim: a wiring fault of the simulated rig",
                              choices=tuple(FAULTS))
    motor_share: float = field(0.3, help="the largest command of the checks, as a share of the rig's action limit")
    record: str = field("rig_checks", help="directory of the saved results, one RIG.json per rig "
                        "(`bpd hil run --checks` reads it)", flag="--checks")
    seed: int = field(0, help="seed of the simulated rig")
    estop: bool = field(False, help="press the emergency stop during the check, then release it: on a board's port the "
                        "technician at this terminal is told when (stdin must be a terminal); with --port sim the "
                        "simulated rig's hand presses it")
    estop_window: float = field(10.0, help="with --estop: seconds the technician has to press the emergency stop, and "
                                "to release it")


# What each fault of the simulated rig (firmware_host/rig/sim.py FAULTS) must be found as on
# desktop-cartpole: the check that fails and a piece of its fix. The tests and the benchmark judge by it.
FINDINGS = {
    "reversed-encoder": ("pendulum direction and scale", "set wiring.encoders[1].invert: true"),
    "reversed-motor": ("motor polarity", "set wiring.motor.invert: true"),
    "wrong-counts": ("pendulum direction and scale", "set sensors.counts_per_unit[1]: "),
    "stuck-sensor": ("pendulum direction and scale", "stuck or unplugged"),
    "noisy-sensor": ("cart noise at rest", "reads noisy at rest"),
    "dead-motor": ("motor moves the rig", "the motor does not move"),
    "dead-end-stop": ("end stop right", "end stop right never fired"),
    "swapped-end-stops": ("end stop right", "the end stops look swapped (the left switch wired to PC1"),
    "swapped-encoders": ("encoders swapped", "encoders' cables are swapped: plug the cart's into wiring.encoders[0]"),
    "dead-estop": ("emergency stop", "the emergency stop never reached the device: check the button"),
    "stuck-estop": ("emergency stop released", "the emergency stop still reads pressed after its release"),
}


def found(result: dict, fault: str) -> bool:
    """Whether a check result names the fault: its check failed with its fix."""
    name, fix = FINDINGS[fault]
    return any(c["name"] == name and c["passed"] is False and fix in c["fix"] for c in result["checks"])


# a check not run after the emergency stop ended a run above (hil/rig_session.py Session: no run starts after it)
ESTOP_ABOVE = "the emergency stop ended a run above, and its release restarts nothing: release it, and check again"


def _invert_fix(spec: RigSpec, i: int) -> str:
    w = spec.wiring
    if w is None:
        return "swap its A and B wires"
    now = bool(w["encoders"][i].get("invert", False))
    return f"set wiring.encoders[{i}].invert: {str(not now).lower()}"


def check_rest(spec: RigSpec, rest: np.ndarray, ticks: int, flags: int = 0) -> tuple[list[Check], bool]:
    """The second at rest (`ticks` asked for, `rest` the positions read): each sensor's noise, whether the rig stood
    still, the offsets. True when the move may follow: a whole second, nothing moving and the cart within its
    limit; the model it is judged by starts at rest, so a swinging pendulum or a cart at a stop (where the last
    check or trial left it: a board's RESET moves nothing) would be read as a wrong scale or a dead motor. `flags`,
    the run's last STATE's, names the input that ended a run cut short (the e-stop has a flag of its own)."""
    names, _ = sensor_names(spec)
    cpu = spec.counts_per_unit
    noise = list(spec.sensors.get("noise_std", [0.0] * spec.n_pos))[:spec.n_pos]
    noise += [0.0] * (spec.n_pos - len(noise))
    out = []
    if len(rest) < 3:
        for i in range(spec.n_pos):
            out.append(Check(f"{names[i]} noise at rest", None, f"not measured: the run ended after {len(rest)} "
                             "ticks"))
    moving = []
    for i in range(spec.n_pos if len(rest) >= 3 else 0):
        allowed = 3 * float(noise[i]) + 2.0 / cpu[i]  # the rig's own noise, and quantisation
        # noise from one tick to the next (white noise: std of the differences over sqrt 2), so that a pendulum still
        # swinging is not taken for a noisy encoder; what the readings spread beyond it is motion
        std = float(np.diff(rest[:, i]).std() / math.sqrt(2))
        ok = std <= allowed
        out.append(Check(f"{names[i]} noise at rest", ok, f"std {std:.3g} (allowed {allowed:.3g})",
                         "" if ok else f"{names[i]} encoder reads noisy at rest: check its cable (shielded, away from "
                                       "the motor leads), its ground and supply"))
        if ok and float(rest[:, i].std()) > allowed:
            moving.append(f"{names[i]} moved {float(np.ptp(rest[:, i])):.3g} (peak to peak)")
    whole = len(rest) >= ticks
    still = whole and not moving
    c, a = spec.pos_index, spec.angle_index
    if not whole:
        beyond = bool(len(rest)) and abs(float(rest[-1, c])) > spec.limits["position"]
        w = spec.wiring or {}
        held = ("the emergency stop input is closed (pressed, or a loose wire on its pin, wiring.estop "
                f"{w.get('estop')}): release it" if flags & FLAGS["estop"] else
                "an end stop input is closed (the cart at a stop, or a loose wire on its pin: wiring.end_stops "
                f"{', '.join(str(e.get('pin')) for e in w.get('end_stops', []))}): move the cart off it"
                if flags & FLAGS["limit_stop"] else
                "an end stop or the emergency stop input closed (pressed, or a loose wire on its pin: "
                "wiring.end_stops, wiring.estop): release it")
        out.append(Check("rig at rest", False, f"the device ended the run after {len(rest)} of {ticks} ticks",
                         f"the {names[c]} stands beyond the position limit (its offset below)" if beyond else
                         f"{held}, then check again"))
    else:
        swing = [m for m in moving if m.startswith(names[a])]
        out.append(Check("rig at rest", still, "; ".join(moving) if moving else "still for a second",
                         "" if still else
                         (f"the {names[a]} was swinging: let it hang still, then check again" if swing else "")
                         + ("; " if swing and len(swing) < len(moving) else "")
                         + (f"the {names[c]} moved with the motor commanded to zero: if no hand moved it, the "
                            "H-bridge drives at zero duty (check that its PWM input is active high and wired to "
                            "wiring.motor's pwm pin)" if len(swing) < len(moving) else "")))
    if not len(rest):
        return out, False
    x = float(rest[:, c].mean())
    inside = abs(x) <= spec.limits["position"]
    out.append(Check(f"{names[c]} offset at rest", inside, f"{x:+.4g}",
                     "" if inside else f"{names[c]} reads {x:+.3g} at rest, beyond the position limit "
                                       f"{spec.limits['position']:g}: move it to the centre by hand; if it then reads "
                                       "off centre, power the board on again with it centred (the encoder counts "
                                       "from power-on)"))
    ang = float(rest[:, a].mean())
    off = math.remainder(ang - math.pi, 2 * math.pi)
    ok = abs(off) <= 0.2
    out.append(Check(f"{names[a]} offset at rest", ok, f"{ang:+.4g} (hanging: +-pi)",
                     "" if ok else f"{names[a]} reads {ang:+.3g} hanging at rest, not +-pi: power the "
                                   "board on with it hanging still, and check its counts per unit"))
    return out, still and inside


def check_move(spec: RigSpec, measured: np.ndarray, predicted: np.ndarray, rest: np.ndarray) -> tuple[list[Check],
                                                                                                     bool]:
    """Direction, scale and life of each sensor and the motor from one commanded move (its travel from
    the mean at rest, against the model's from its start); True when the motor and the driven sensor
    are proven (the end-stop drive may follow)."""
    names, where = sensor_names(spec)
    cpu = spec.counts_per_unit
    noise = list(spec.sensors.get("noise_std", []))[:spec.n_pos]
    noise += [0.0] * (spec.n_pos - len(noise))
    k = min(len(measured), len(predicted))
    m = measured[:k] - rest.mean(axis=0)
    p = predicted[:k] - predicted[0]
    moved, ratio = [], []
    for i in range(spec.n_pos):
        moved.append(float(np.ptp(m[:, i])) > max(3.0 / cpu[i], 8 * float(noise[i])))  # beyond noise
        ratio.append(travel_ratio(m[:, i], p[:, i]))
    c, a = spec.pos_index, spec.angle_index
    motor = spec.wiring["motor"] if spec.wiring else None
    motor_where = f"wiring.motor (PWM {motor['pwm']}, direction {motor['dir']})" if motor else "the motor's wiring"
    out: list[Check] = []
    if not moved[c] and not moved[a]:
        # a held emergency stop ends the run (at its first tick): only end stops on both sides, read pressed,
        # block every command and leave it running
        low = bool((spec.wiring or {}).get("stops_active_low", True))
        sides = {float(st["at"]) > 0 for st in (spec.wiring or {}).get("end_stops", [])}
        held = (f"; or both end stops read pressed, which blocks every command: switches that do not close to "
                f"{'ground' if low else '3.3 V'} when pressed (normally open; stops_active_low: {str(low).lower()})"
                if len(sides) == 2 else "")
        out.append(Check("motor moves the rig", False, "no sensor changed",
                         f"the motor does not move: check the H-bridge's supply and enable, and {motor_where}{held}"))
        for i in range(spec.n_pos):
            out.append(Check(f"{names[i]} direction and scale", None, "not checked: the motor does not move"))
        return out, False
    out.append(Check("motor moves the rig", True, ", ".join(f"{names[i]} {'moved' if moved[i] else 'still'}"
                                                           for i in range(spec.n_pos))))
    if moved[c] and moved[a] and (swap := swapped(m, p, c, a)) is not None:
        out.append(Check("encoders swapped", False, swap, f"the {names[c]} and {names[a]} encoders' cables are "
                         f"swapped: plug the {names[c]}'s into {where[c]} and the {names[a]}'s into {where[a]}"))
        for i in range(spec.n_pos):
            out.append(Check(f"{names[i]} direction and scale", None, "not judged: the encoders are swapped"))
        return out, False
    for i in range(spec.n_pos):
        if not moved[i]:
            out.append(Check(f"{names[i]} direction and scale", False, "no change while the rig moved",
                             f"{names[i]} encoder reads one value while the rig moves (stuck or unplugged): check "
                             f"its cable and {where[i]}"))
    sign = {i: (1 if ratio[i] > 0 else -1) for i in range(spec.n_pos) if moved[i]}
    motor_reversed = sign.get(c) == -1 and sign.get(a, -1) == -1
    if motor_reversed:
        inv = bool(motor.get("invert", False)) if motor else False
        out.append(Check("motor polarity", False, f"{names[c]} x{ratio[c]:+.2f}"
                         + (f", {names[a]} x{ratio[a]:+.2f}" if a in sign else "") + " of the model",
                         "the motor drives the wrong way: " + (f"set wiring.motor.invert: {str(not inv).lower()}"
                                                                if motor else "swap its two leads")
                         + " (or, if both encoders were rewired, invert both encoders instead)"))
    else:
        out.append(Check("motor polarity", True, f"{names[c]} follows the command" if c in sign
                         else f"{names[a]} follows the command"))
    for i in sign:
        r = ratio[i] * (-1 if motor_reversed else 1)
        if r < 0:
            out.append(Check(f"{names[i]} direction and scale", False, f"x{ratio[i]:+.2f} of the model",
                             f"{names[i]} encoder counts backwards: {_invert_fix(spec, i)}"))
        elif not 0.75 <= r <= 1.33:
            out.append(Check(f"{names[i]} direction and scale", False, f"x{ratio[i]:+.2f} of the model",
                             f"{names[i]} encoder reads {r:.2f} times the model's travel: set "
                             f"sensors.counts_per_unit[{i}]: {cpu[i] * r:.6g} (now {cpu[i]:g}; 4 counts per line "
                             "in the timer's encoder mode)"))
        else:
            out.append(Check(f"{names[i]} direction and scale", True, f"x{ratio[i]:+.2f} of the model"))
    proven = moved[c] and not motor_reversed and c in sign and all(
        ch.passed for ch in out if ch.name in ("motor polarity", f"{names[c]} direction and scale"))
    return out, proven


def swapped(m: np.ndarray, p: np.ndarray, c: int, a: int) -> str | None:
    """Whether the two sensors' travels (m) each follow the model's travel of the other (p) closer than their own,
    within a correlation of 0.95 (either sign): the encoders' cables plugged into each other's inputs, which would
    read as a wrong scale, a reversed encoder or a reversed motor. What was measured, or None."""
    def corr(x: np.ndarray, y: np.ndarray) -> float:
        return abs(float(np.corrcoef(x, y)[0, 1])) if x.std() > 0 and y.std() > 0 else 0.0

    own, other = (corr(m[:, c], p[:, c]), corr(m[:, a], p[:, a])), (corr(m[:, c], p[:, a]), corr(m[:, a], p[:, c]))
    if min(other) >= 0.95 and other[0] > own[0] and other[1] > own[1]:
        return (f"correlation with the other's model travel {other[0]:.2f}, {other[1]:.2f}; with their own "
                f"{own[0]:.2f}, {own[1]:.2f}")
    return None


def opened_limit(at: float, track: float | None) -> float:
    """The position limit while an end stop at +-at is driven to: 6 % beyond it, and no further than halfway from
    it to the hard stops (`track`), so that a dead switch ends the run on the limit before the track's end."""
    return min(1.06 * at, (at + float(track)) / 2) if track else 1.06 * at


def check_end_stops(spec: RigSpec, session: Session, share: float) -> list[Check]:
    """Drive slowly to each end stop. The position limit is opened to just beyond the stop (opened_limit): the
    run must end by the stop (a limit stop at the stop's position, short of halfway to the opened limit), not by
    the limit, nor by another stop input short of halfway from the centre to the stop (the emergency stop pressed
    before it was asked for, a switch on another pin). A drive that does not move the cart off the stop on the other
    side, where the drive before left it, finds that stop's switch blocking this side: the stops swapped."""
    w = spec.wiring or {}
    out = []
    c = spec.pos_index
    stopped = False  # the emergency stop ended a drive: no drive after it (its release restarts nothing)
    for i, st in enumerate(w.get("end_stops", [])):
        if stopped:
            out.append(Check(f"end stop {st['name']}", None, f"not driven: {ESTOP_ABOVE}"))
            continue
        at = float(st["at"])
        u = math.copysign(min(share, 0.25) * spec.limits["action"], at)
        seconds = 4.0 * abs(at) / 0.1 + 2.0  # at 0.1 unit/s at the slowest, from the far side
        opened = opened_limit(abs(at), spec.track)
        rows, sent, flags = session.run(int(seconds * 1e6 / spec.period_us), lambda k, obs, u=u: u, opened)
        x = float(rows[-1, c]) if len(rows) else float("nan")
        fired = bool(flags & FLAGS["limit_stop"]) and abs(x) <= (abs(at) + opened) / 2
        short = x * at <= 0 or abs(x) < abs(at) / 2  # a stop far from this switch's side: another input ended it
        stopped = bool(flags & FLAGS["estop"])
        if stopped:
            out.append(Check(f"end stop {st['name']}", False, f"the emergency stop ended the drive at {x:+.4g}",
                             "the emergency stop was pressed during the drive (or its input closed on its own: a "
                             f"loose wire on {w.get('estop')}, wiring.estop): release it, and check again"))
        elif (o := held_other_side(spec, rows, sent, at)) is not None:
            other = w["end_stops"][o]
            out.append(Check(f"end stop {st['name']}", False, f"did not move off end stop {other['name']} (from "
                             f"{float(rows[0, c]):+.4g} to {x:+.4g} in {(len(rows) - 1) * spec.period_us * 1e-6:.2f} "
                             "s)", f"the drive towards end stop {st['name']} is blocked "
                             f"while the switch at end stop {other['name']} is pressed: the end stops look swapped "
                             f"(the {other['name']} switch wired to {st['pin']}, end stop {st['name']}'s input, and "
                             f"the {st['name']} switch to {other['pin']}): swap the two pins in wiring.end_stops "
                             f"([{min(i, o)}] and [{max(i, o)}]), or the two wires at the board"))
        elif fired and short:
            out.append(Check(f"end stop {st['name']}", False, f"a stop at {x:+.4g}, short of the switch",
                             f"not end stop {st['name']} (at {at:+g}): another stop input ended the run (the "
                             "emergency stop pressed, or a switch on another pin), or the encoder counts from a "
                             "power-on off centre; release every stop, power the board on with the cart centred and "
                             "check again; if it stops there again, check wiring.end_stops' pins"))
        elif fired:
            out.append(Check(f"end stop {st['name']}", True, f"fired at {x:+.4g}"))
        elif flags & FLAGS["limit_stop"]:
            out.append(Check(f"end stop {st['name']}", False, f"no stop by {at:+g}; the position limit stopped at "
                             f"{x:+.4g}", f"end stop {st['name']} never fired: check the switch, its wiring to "
                             f"{st['pin']} (wiring.end_stops[{i}]) and stops_active_low"))
        else:
            out.append(Check(f"end stop {st['name']}", False, f"not reached ({x:+.4g} after {seconds:.0f} s)",
                             "the cart did not reach the stop: check for friction or a blocked track, and motor_share"))
    return out


def held_other_side(spec: RigSpec, rows: np.ndarray, sent: list[float], at: float) -> int | None:
    """The end stop (its index in wiring.end_stops) on the other side of the drive towards `at` that the cart started
    at and did not move off towards `at` (not beyond the encoder's noise, where the model's travel for the same
    commands is four times that: a cart slowed by friction still goes its way): its switch, pressed, blocked the drive
    away from it, so it is wired to the input of a stop on this side (an end stop blocks the commands towards its own
    side only). None if the cart went its way, the run was too short to tell, or it did not start at a stop on the
    other side."""
    c = spec.pos_index
    if len(rows) < 2:
        return None
    x0 = float(rows[0, c])
    stops = [float(st["at"]) for st in (spec.wiring or {}).get("end_stops", [])]
    near = [j for j, o in enumerate(stops) if o * at < 0 and x0 * o > 0 and abs(x0) >= abs(o) / 2]
    if not near:
        return None
    noise = list(spec.sensors.get("noise_std", []))[c:c + 1] or [0.0]
    pred = model_response(spec, sent)[:, c]
    k = min(len(rows), len(pred))
    way = math.copysign(1.0, at)
    expected = float(((pred[:k] - pred[0]) * way).max())
    got = float(((rows[:k, c] - x0) * way).max())
    seen = max(3.0 / spec.counts_per_unit[c], 8 * float(noise[0]))  # a travel beyond the encoder's noise
    return near[0] if expected > 4 * seen and got <= seen else None


def check_return(spec: RigSpec, session: Session, share: float) -> Check:
    """Drive the cart back, slowly, to the centre (where its encoder reads 0: where the board was powered on): a
    board's RESET moves nothing, so the next check, trial or power-on (which zeroes the encoder) would start at the
    end stop the drive left it at. A position loop saturating at the end-stop drive's command, stopped within 2.5 %
    of the position limit from the centre, its run's position limit opened to twice where the cart stands but no
    further than halfway from there to the track (the device takes none at the track or past it); not a check of the
    rig, so at worst not done ("-"), with what to do by hand."""
    c = spec.pos_index
    name = sensor_names(spec)[0][c]
    u_max = min(share, 0.25) * spec.limits["action"]
    band = 0.05 * spec.limits["position"]
    gain = u_max / (4 * band)  # the full command until 4 bands away, then in proportion
    last = float(session.runs[-1][-1].fields["obs"][c]) if session.runs and session.runs[-1] else 0.0
    limit = 2 * abs(last) + band  # where it stands (past an opened limit, a dead stop's run) and as far the other way
    if track := spec.track:  # short of the track, as the end-stop drives' (opened_limit): the device takes no more
        limit = min(limit, (abs(last) + track) / 2)
    seconds = 4.0 * abs(last) / 0.1 + 2.0  # at 0.1 unit/s at the slowest
    ticks = int(seconds * 1e6 / spec.period_us)
    rows, _, flags = session.run(ticks, lambda k, obs: -gain * float(obs[c]), limit,
                                 until=lambda obs: abs(float(obs[c])) <= band / 2)
    x = float(rows[-1, c]) if len(rows) else float("nan")
    if abs(x) <= band:
        return Check(f"{name} back to the centre", True, f"at {x:+.4f}")
    why = "the device ended the run" if not flags & FLAGS["running"] else f"not there in {seconds:.0f} s"
    return Check(f"{name} back to the centre", None, f"stopped at {x:+.4f}: {why}",
                 f"move the {name} to the centre by hand before the next check or trial (or power the board on "
                 "again with it centred)")


def _host_late(spec: RigSpec, st) -> bool:
    """A STATE whose previous exchange took half a period or more: on a lockstep rig (the simulated
    one) the tick then waited for the host; a board never waits, so there it shows as a stale state."""
    return bool(st.fields["rtt_us"] >= spec.period_us // 2)


def check_timing(spec: RigSpec, runs: list[list]) -> Check:
    """The tick period within each run (the device clock, t_us), and the overrun flags that are the
    device's own (not a lockstep rig waiting for a late host answer)."""
    states = [s for r in runs for s in r]
    dt = np.array([(b.fields["t_us"] - a.fields["t_us"]) & 0xFFFFFFFF for r in runs for a, b in zip(r, r[1:])],
                  np.int64)
    period = spec.period_us
    over = sum(1 for s in states if s.fields["flags"] & FLAGS["overrun"] and not _host_late(spec, s))
    waited = sum(1 for s in states if s.fields["flags"] & FLAGS["overrun"] and _host_late(spec, s))
    if not len(dt):
        if states:  # the runs ended at their first tick (a check above says why): no period to measure
            return Check("loop timing", None, f"not measured: {len(states)} ticks, no two in one run")
        return Check("loop timing", False, "no ticks", "the device sent no states: check the link")
    med, p99 = float(np.median(dt)), float(np.percentile(dt, 99))
    ok = abs(med - period) <= 0.02 * period and over <= 0.01 * len(states)
    return Check("loop timing", ok, f"period median {med:.0f} us, p99 {p99:.0f} us (rig {period} us), "
                 f"{over} overruns in {len(states)} ticks (+{waited} waiting for a late host answer)",
                 "" if ok else "the device's tick is late: check the board's clock (BOARD_CPU_HZ) and that "
                               "nothing else runs in its interrupts")


def check_link(spec: RigSpec, runs: list[list], before: dict | None, after: dict | None, bad_host: int) -> Check:
    states = [s for r in runs for s in r]
    stale = sum(1 for s in states if s.fields["flags"] & FLAGS["stale_action"])
    rtt = [s.fields["rtt_us"] for s in states if s.fields["rtt_us"]]
    late = sum(1 for s in states if _host_late(spec, s))
    p99 = float(np.percentile(rtt, 99)) if rtt else float("nan")
    # frames the device's receiver lost mean a bad link; an action that came after its tick (dropped, the tick
    # using the last one: a stale state too) means a late host, held to the same 1 % as the stale states
    lost = None if before is None or after is None else after["rx_dropped"] - before["rx_dropped"]
    late_actions = None if before is None or after is None else after["actions_dropped"] - before["actions_dropped"]
    share = 0.01 * max(1, len(states))
    ok = lost == 0 and bad_host == 0 and stale <= share and late_actions is not None and late_actions <= share
    counts = ("device counters not reported" if lost is None else
              f"device lost {lost} frames and dropped {late_actions} late actions")
    trip = f"round trip p99 {p99:.0f} us" if rtt else "no round trip measured"
    return Check("link quality", ok, f"{counts}, host bad frames {bad_host}, stale {stale}, {trip} "
                 f"(period {spec.period_us} us), {late} answers after half a period",
                 "" if ok else "frames are lost or late: check the cable and the baud rate (serial.baud), and "
                               "the adapter's latency (low_latency in a trial's summary); on a pty, a host too busy "
                               "to answer in time")


# ------------------------------------------------------------------ the whole check


def run_check(cfg: RigCheckConfig) -> dict:
    check_ranges(cfg, {"motor_share": (0, 1, "open"), "seed": (0, 2**31 - 1), "estop_window": (1, 600)})
    spec = load_rig(cfg.rig)
    if not spec.has_encoders:
        raise BpdError(f"rig {spec.name} has no encoders to commission (a simulated rig only)")
    if cfg.port == "pil":
        raise BpdError("--port pil runs a firmware image in QEMU with a modelled plant, nothing to commission: give a "
                       "board's port, or --port sim for the simulated bench rig")
    if cfg.fault and cfg.port != "sim":
        raise BpdError("--fault is a fault of the simulated rig: give --port sim")
    estop.refuse(spec, cfg.port, cfg.fault, cfg.estop)
    if cfg.port == "sim":
        import subprocess

        from hil.trial import RigProcess

        build = tempfile.mkdtemp(prefix="bpd-rig-check-")
        args = ["rig", "sim", "--rig", str(cfg.rig), "--lockstep", "--bench", "--seed", str(cfg.seed),
                "--build-dir", build, *(["--fault", cfg.fault] if cfg.fault else []),
                *(["--estop-stdin"] if cfg.estop else [])]
        rig = RigProcess(args, build, subprocess.PIPE if cfg.estop else None)
        with rig as port:
            result = _check(cfg, spec, port, estop.SimHand(rig.proc.stdin, spec.period_us) if cfg.estop else None)
    else:
        result = _check(cfg, spec, cfg.port, estop.TerminalHand() if cfg.estop else None)
    write_json(Path(cfg.record) / f"{spec.name}.json", result)
    return result


def _build_command(spec: RigSpec, rig: str) -> str:
    """`bpd firmware build` of the rig's firmware for the board its wiring names, on that board's core (the first
    its port builds for)."""
    from firmware_host.measure.build import BOARD_PORTS

    board = (spec.wiring or {}).get("board", "BOARD")
    target = BOARD_PORTS[board]["targets"][0] if board in BOARD_PORTS else "TARGET"
    return f"bpd firmware build EXPORT --target {target} --board {board} --rig {rig}"


def _check(cfg: RigCheckConfig, spec: RigSpec, port: str, hand=None) -> dict:
    """The checks on the device at `port`; `hand` presses the emergency stop (hil/estop.py; None: not pressed)."""

    t0 = time.perf_counter()
    link = DeviceLink(port, spec.baud)
    checks: list[Check] = []
    session: Session | None = None
    try:
        info = link.handshake()
        ok = (info["obs_dim"], info["act_dim"], info["period_us"]) == (spec.obs_dim, spec.act_dim, spec.period_us)
        checks.append(Check("link", ok, f"protocol {info['protocol']}, {info['obs_dim']} -> {info['act_dim']}, "
                            f"{info['period_us']} us",
                            "" if ok else f"the board runs another rig's firmware: build it for {spec.name} "
                                          f"({_build_command(spec, cfg.rig)}) and flash it (bpd firmware flash "
                                          "with the build's directory)"))
        if ok:
            before = link.dropped()
            session = Session(link, spec, cfg.motor_share * spec.limits["action"])
            wide = spec.limits["position"]  # rest and move stay within the rig's own position limit
            second = int(1e6 / spec.period_us)
            rest, _, rest_flags = session.run(second, lambda k, obs: 0.0, wide)
            rest_checks, at_rest = check_rest(spec, rest, second, rest_flags)
            checks += rest_checks
            proven = False
            if at_rest:
                profile = push_profile(spec, cfg.motor_share * spec.limits["action"], 3)
                moved, sent, _ = session.run(len(profile) + 1,
                                             lambda k, obs: profile[k] if k < len(profile) else 0.0, wide)
                move_checks, proven = check_move(spec, moved, model_response(spec, sent), rest)
                if any(ch.name == "encoders swapped" for ch in move_checks):  # each read in the other's units
                    for ch in checks:
                        if ch.name.endswith(" noise at rest") and ch.passed is False:
                            ch.passed, ch.fix = None, ""
                            ch.measured += ": not judged, the encoders are swapped (below)"
                checks += move_checks
                cart = sensor_names(spec)[0][spec.pos_index]
                cart_noise = next(ch for ch in checks if ch.name == f"{cart} noise at rest")
                proven = proven and cart_noise.passed is True  # a noisy one would end a drive on its position limit
            else:
                checks += [Check(n, None, "not run: the rig was not at rest within its limits (above)") for n in
                           ["motor moves the rig"] + [f"{x} direction and scale" for x in sensor_names(spec)[0]]]
            proven = proven and not session.estopped  # the emergency stop ended the move: nothing drives after it
            centred = proven
            if (spec.wiring or {}).get("end_stops"):
                if proven:
                    checks += check_end_stops(spec, session, cfg.motor_share)
                    checks.append(check_return(spec, session, cfg.motor_share) if not session.estopped else
                                  Check(f"{sensor_names(spec)[0][spec.pos_index]} back to the centre", None,
                                        f"not driven: {ESTOP_ABOVE}"))
                    centred = checks[-1].passed is True
                elif session.estopped:
                    checks += [Check(f"end stop {st['name']}", None, f"not driven: {ESTOP_ABOVE}")
                               for st in spec.wiring["end_stops"]]  # type: ignore[index]
                else:
                    cart = sensor_names(spec)[0][spec.pos_index]
                    checks += [Check(f"end stop {st['name']}", None, f"not driven: the motor or the {cart} encoder "
                                     "failed above" if at_rest else f"not driven: the motor and the {cart} encoder "
                                     "not checked")
                               for st in spec.wiring["end_stops"]]  # type: ignore[index]
            cart = sensor_names(spec)[0][spec.pos_index]
            not_ready = ("" if centred else ESTOP_ABOVE if session.estopped else
                         f"the motor or the {cart} encoder not proven above" if not proven else
                         f"the {cart} not back at the centre (above), where the push after the release starts")
            checks += estop.estop_checks(spec, session, hand, not_ready, cfg.estop_window, cfg.motor_share,
                                         any(ch.passed is False for ch in checks))
            checks.append(check_timing(spec, session.runs))
            checks.append(check_link(spec, session.runs, before, link.dropped(), link.parser.bad_frames))
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: the line bpd_app/cli.py prints says what became of it
        stopping = HeldStops()  # a second Ctrl-C does not cut the stop short
        try:
            link.close()
        finally:
            stopping.release()
        e.bpd_note = (f"{STOP_FAILED} after {spec.watchdog_ticks} ticks" if link.stop_error else  # type: ignore
                      "the stop was sent: the device zeroes the motor") + "; no check result saved"
        raise
    except BaseException:
        link.close()
        raise
    link.close()
    failed = [c for c in checks if c.passed is False]
    ticks = sum(len(r) for r in session.runs) if session else 0
    return {"ticks": ticks, "device_seconds": round(ticks * spec.period_us * 1e-6, 2), "rig": spec.name,
            "rig_sha256": rig_hash(spec), "port": port if cfg.port != "sim" else "sim",
            "fault": cfg.fault, "passed": not failed, "failed": [c.name for c in failed],
            "checks": [vars(c) for c in checks], "seconds": round(time.perf_counter() - t0, 2),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "protocol": PROTOCOL_VERSION}


def format_table(result: dict) -> str:
    rows = [("check", "result", "measured", "fix")]
    for c in result["checks"]:
        rows.append((c["name"], {True: "pass", False: "FAIL", None: "-"}[c["passed"]], c["measured"], c["fix"]))
    width = [max(len(r[j]) for r in rows) for j in range(3)]
    width[2] = min(width[2], 40)  # a long measurement takes its own line, its fix the next, not the table's width
    lines = []
    for r in rows:
        head = "  ".join(r[j].ljust(width[j]) for j in range(2)) + "  "
        if len(r[2]) <= width[2]:
            lines.append((head + r[2].ljust(width[2]) + "  " + r[3]).rstrip())
        else:
            lines += [head + r[2]] + ([" " * (len(head) + width[2] + 2) + r[3]] if r[3] else [])
    verdict = "PASSED" if result["passed"] else f"FAILED ({', '.join(result['failed'])})"
    return "\n".join(lines) + f"\nrig {result['rig']}: {verdict} in {result['seconds']:.1f} s"
