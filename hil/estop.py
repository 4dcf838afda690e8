"""`bpd rig check --estop`: the emergency stop (wiring.estop) pressed during the check, then released.

The device in host mode holds the motor at zero while the technician presses the stop: the firmware ends the run at
the next tick with the emergency stop's own flag (a STATE with the running flag clear and estop set; an end stop's
input sets limit_stop, and does not pass), which must come within the window (--estop-window seconds). Released,
a new run must start and a small push each way must move the rig: a held emergency stop ends every run at its first
tick (its release must not by itself restart motion, ISO 13850: only a new START does), so a run that goes on shows it
reads released, and the push that the motor drives again. On a board's port the technician is at this terminal, told
when on stderr (stdin not a terminal: refused before anything runs, never a wait for a hand that is not there); with
--port sim the simulated rig's hand (`bpd rig sim --estop-stdin`) presses it PRESS_AFTER_S into the window and
releases it when told.
"""

from __future__ import annotations

import select
import sys
import termios

from bpd.errors import BpdError
from firmware_host.rig import RigSpec
from firmware_host.rig.sim import ESTOP_FAULTS
from firmware_host.wire.spec import FLAGS
from hil.rig_session import Check, Session, model_response, push_profile, sensor_names, travel_ratio

PRESS_AFTER_S = 0.5  # the simulated technician's press, after being told: a hand's reaction, well inside the window


def refuse(spec: RigSpec, port: str, fault: str | None, estop: bool) -> None:
    """Before anything is started: --estop on a rig without an emergency stop, on a board's port without a terminal to
    tell the technician at; an emergency-stop fault of the simulated rig without --estop (nothing would press it)."""
    if fault in ESTOP_FAULTS and not estop:
        raise BpdError(f"--fault {fault}: the emergency stop is pressed only with --estop: give it")
    if not estop:
        return
    if "estop" not in (spec.wiring or {}):
        raise BpdError(f"--estop: rig {spec.name} has no emergency stop in its wiring (wiring.estop)")
    if port != "sim" and (sys.stdin is None or not sys.stdin.isatty()):  # None: started with stdin closed
        raise BpdError("--estop: the technician presses the emergency stop when this terminal says, and stdin is not "
                       "a terminal (a pipe, CI): run the check at the rig's terminal, or leave out --estop")


class TerminalHand:
    """The technician at this terminal: told on stderr when to press and to release; the release confirmed with
    Enter, or taken as done once the window has passed."""

    press_tick = None

    def ask_press(self, pin: str, window: float) -> None:
        print(f"emergency stop: press it now ({pin}: the emergency stop, not an end stop), within {window:g} s; the "
              "motor is held at zero",
              file=sys.stderr, flush=True)

    def at_tick(self, k: int) -> None:
        pass

    def ask_release(self, pin: str, window: float) -> None:
        print(f"emergency stop seen: release it, then press Enter (the check goes on in {window:g} s at most)",
              file=sys.stderr, flush=True)
        try:
            termios.tcflush(sys.stdin, termios.TCIFLUSH)  # an Enter typed before the question answers nothing
            if select.select([sys.stdin], [], [], window)[0]:
                sys.stdin.readline()
        except (OSError, ValueError, termios.error):  # no terminal to read after all: the window is the wait
            select.select([], [], [], window)


class SimHand:
    """The simulated rig's technician: `press` and `release` lines on its stdin (`bpd rig sim --estop-stdin`), the
    press PRESS_AFTER_S into the window (written before that tick's action, so that the next tick reads it)."""

    def __init__(self, pipe, period_us: int) -> None:
        self.pipe = pipe
        self.press_tick = max(1, int(PRESS_AFTER_S * 1e6 / period_us))

    def _say(self, line: str) -> None:
        try:
            self.pipe.write(line + "\n")
            self.pipe.flush()
        except (BrokenPipeError, ValueError):  # the rig has gone: the link says so
            pass

    def ask_press(self, pin: str, window: float) -> None:
        pass

    def at_tick(self, k: int) -> None:
        if k == self.press_tick:
            self._say("press")

    def ask_release(self, pin: str, window: float) -> None:
        self._say("release")


def estop_checks(spec: RigSpec, session: Session, hand, not_ready: str, window: float, share: float,
                 failed_above: bool) -> list[Check]:
    """The emergency stop's rows: none for a rig without one; not pressed without --estop (a hand), nor where a
    check above left it unready (`not_ready` says why: the push after the release needs the motor, the position
    encoder and the rig at the centre). Asked for (--estop) and not pressed, the row fails unless a check above
    failed already: a check that passes has pressed it. `window`: the seconds the hand has to press, and to release;
    `share`: the push's, of the rig's action limit."""
    w = spec.wiring or {}
    if "estop" not in w:
        return []
    if hand is None:
        return [Check("emergency stop", None, "not pressed: give --estop at the rig's terminal to press it during "
                      "the check")]
    if not_ready:
        name = sensor_names(spec)[0][spec.pos_index]
        return [Check("emergency stop", None if failed_above else False, f"not pressed: {not_ready}",
                      "" if failed_above else f"move the {name} to the centre by hand, then check again with --estop")]
    pin, low = w["estop"], bool(w.get("stops_active_low", True))
    wiring = (f"its wiring to {pin} (wiring.estop) and stops_active_low ({str(low).lower()}: the input reads pressed "
              f"at {'0 V' if low else '3.3 V'})")
    period, c = spec.period_us * 1e-6, spec.pos_index
    ticks = int(window / period)
    limit = spec.limits["position"]
    hand.ask_press(pin, window)
    rows, _, flags = session.run(ticks, lambda k, obs: hand.at_tick(k) or 0.0, limit)
    end = len(rows) - 1
    x = float(rows[-1, c]) if len(rows) else float("nan")
    pressed = hand.press_tick or 0
    if flags & FLAGS["running"]:
        press = Check("emergency stop", False, f"no stop in {window:g} s" + (
            f" (pressed at {pressed * period:.2f} s)" if hand.press_tick else ""),
            f"the emergency stop never reached the device: check the button (normally open, closing to "
            f"{'ground' if low else '3.3 V'} when pressed), {wiring}")
    elif flags & FLAGS["estop"] and end == 0:  # held, it ends every run at its first tick
        press = Check("emergency stop", False, "the run ended at its first tick, before the press",
                      "the emergency stop was held down from before this check asked for it (held, it ends every "
                      "run): release it, then check again and press it when asked")
    elif flags & FLAGS["estop"] and end <= pressed:
        press = Check("emergency stop", False, f"the run ended at {end * period:.2f} s: before the press",
                      "not the press asked for: release every stop, and check again")
    elif not flags & FLAGS["estop"]:
        beyond = flags & FLAGS["limit_stop"] and abs(x) > limit
        why = ("the position limit" if beyond else "an end stop's input, not the emergency stop's"
               if flags & FLAGS["limit_stop"] else f"no stop flag (flags {flags:#x})")
        press = Check("emergency stop", False, f"the run ended at {end * period:.2f} s: {why}",
                      f"an end stop's input fired, not the emergency stop's: press the emergency stop ({pin}) when "
                      f"asked, not an end stop; if it was pressed, check {wiring}, not an end stop's pin"
                      if flags & FLAGS["limit_stop"] and not beyond else
                      "not the emergency stop: centre the cart, release every stop, and check again")
    else:
        press = Check("emergency stop", True, f"the run ended {(end - pressed) * period:.3g} s after the press"
                      if hand.press_tick else f"the run ended {end * period:.1f} s into the window")
    if not press.passed:
        return [press, Check("emergency stop released", None, "not run: no stop to release")]
    hand.ask_release(pin, window)
    session.released()  # asked for, and released when asked: the next run may start
    profile = push_profile(spec, share * spec.limits["action"], 1)
    moved, sent, flags = session.run(len(profile) + 1, lambda k, obs: profile[k] if k < len(profile) else 0.0, limit)
    name = sensor_names(spec)[0][c]
    if flags & FLAGS["estop"] and len(moved) == 1:  # held, the emergency stop ends every run at its first tick
        return [press, Check("emergency stop released", False, "the new run ended at its first tick",
                             "the emergency stop still reads pressed after its release (held, it ends every run): "
                             f"check that the button releases, {wiring}")]
    if not flags & FLAGS["running"] and len(moved) <= len(profile):
        what = ("the emergency stop's input again: a button that bounces, or a loose wire; check" if flags
                & FLAGS["estop"] else f"an end stop (the {name} not at the centre), or a switch that closes on its "
                "own (a loose wire); check wiring.end_stops and")
        return [press, Check("emergency stop released", False, f"the run ended again at {(len(moved) - 1) * period:.2f}"
                             " s", f"a stop input fired during the push after the release: {what} {wiring}")]
    # the travel against the model's for the same push: a pendulum still swinging from the drive back moves the cart
    # a few millimetres with the motor blocked, which a threshold on the travel alone took for a motor that drives
    pred = model_response(spec, sent)[:, c]
    k = min(len(moved), len(pred))
    m, p = moved[:k, c] - moved[0, c], pred[:k] - pred[0]
    ratio = travel_ratio(m, p)
    if ratio < 0.5:
        return [press, Check("emergency stop released", False, f"the run started; the {name} moved x{ratio:.2f} of the "
                             "model's push", "the motor does not drive after the release: if the emergency stop also "
                             "cuts the H-bridge's supply or enable, check that it comes back on release (some drivers "
                             "need a reset after the cut)")]
    return [press, Check("emergency stop released", True, f"started again: the {name} moved x{ratio:.2f} of the "
                         "model's push")]
