"""`bpd rig sim`: the simulated rig. A MuJoCo plant and the real firmware core (host build) behind a
pseudo-terminal that any serial client opens like a USB-serial device.

Realtime mode paces ticks by the wall clock (timing measured against it means something);
lockstep mode advances one tick per exchange (it waits for the host's answer to each state, in either
mode) for fast deterministic tests. The device clock runs with the wall clock in both, so it advances
within a tick; in lockstep it skips ahead where nothing waits, so that a tick comes one period after
the previous one at the earliest (docs/protocol.md). While the device is idle or in fault the plant
is frozen, except on the bench in real time.

A rig with end stops in its wiring block (`end_stops[].at`) has them here too: one that closes ends
the run (the firmware's external stop, as a board's input does) and, while pressed, blocks the
commands towards its side. `--bench` starts the plant as it stands on a bench before commissioning
(at rest, the pendulum hanging, no reset noise) and keeps it as a board's rig is kept: a RESET leaves
it where it stands and, in real time, it moves on while the device is idle (a pendulum swings out, the
motor at zero), so a second `bpd rig check` finds the rig where the first left it. `--fault NAME`
gives the rig one of the wiring faults commissioning must find (FAULTS; `bpd rig check`,
hil/commission.py). `--estop-stdin` puts the emergency stop (wiring.estop) under a hand: a line `press` on stdin
presses it, `release` releases it (a technician at the rig's terminal, or `bpd rig check --port sim --estop` playing
one); pressed, it ends the run as a board's input does and, held, blocks every command and ends every run at its
first tick (its release restarts nothing: only a new START does).

`--view [PORT]` serves the live page of `bpd hil run --view` (bpd/view.py) from the device's side of
the wire (sim_view.py): every STATE as it leaves the device, and a summary once the rig stops (the
page is waited for up to --view-linger seconds; a second Ctrl-C ends the wait).
"""

from __future__ import annotations

import math
import os
import random
import select
import signal
import sys
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bpd.config import check_ranges, field
from bpd.errors import BpdError
from bpd.view import LiveView
from firmware_host.rig import Plant, RigSpec, load_rig
from firmware_host.rig.device import SoftwareDevice, build_device_library
from firmware_host.rig.sim_view import SimWatch
from firmware_host.wire.spec import STATES

# The faults a real rig is found with on the bench, each selectable on the simulated rig. The
# pendulum is the sensor at the rig's angle index, the cart (or arm) the one at its position index.
FAULTS = {
    "reversed-encoder": "the pendulum encoder counts backwards",
    "reversed-motor": "the motor is wired with the other polarity",
    "wrong-counts": "the pendulum encoder gives twice the counts per unit the rig YAML says",
    "stuck-sensor": "the pendulum encoder reads one value whatever the pendulum does",
    "noisy-sensor": "the position encoder (the cart's, or a rotary rig's arm) reads with noise of 30 counts standard "
                    "deviation",
    "dead-motor": "the motor does not move (no power to the H-bridge)",
    "dead-end-stop": "the end stop on the positive side never fires",
    "swapped-end-stops": "the two end stops' switches are wired to each other's inputs: each ends a run as it closes, "
                         "and while pressed blocks the commands towards the other side, not its own",
    "swapped-encoders": "the position and pendulum encoders' cables are plugged into each other's inputs, each "
                        "input counting on from its own reading at power-on",
    "dead-estop": "the emergency stop never fires when pressed (its wire to the board broken)",
    "stuck-estop": "the emergency stop stays pressed once pressed (a jammed button, a welded contact)",
}
ESTOP_FAULTS = ("dead-estop", "stuck-estop")  # found only where the stop is pressed (`bpd rig check --estop`)


@dataclass
class RigSimConfig:
    rig: str = field("gym-inverted-pendulum", help="rig name or YAML path")
    policy: str | None = field(None, help="export directory whose C policy is compiled into the device")
    classical: str | None = field(None, help="a classical export for hand-over mode (`bpd classical export "
                                  "--handover`), compiled in beside the policy (rule 17)")
    lockstep: bool = field(False, help="advance one tick per exchange instead of by the wall clock")
    action_timeout: float = field(1.0, help="lockstep: seconds to wait for the host's answer to each state")
    period_us: int | None = field(None, help="control period override, microseconds (gym-inverted-pendulum's plant "
                                   "keeps its own step a tick, frame_skip, so runs faster or slower than real "
                                   "time: the first line says by how much)")
    link_delay_ms: float = field(0.0, help="one-way delay added to every byte, both directions")
    drop_rate: float = field(0.0, help="probability that a byte is dropped, both directions")
    corrupt_rate: float = field(0.0, help="probability that a byte is corrupted, both directions")
    actuation_latency_us: int = field(0, help="delay between the actuator command and the plant")
    stall_at: float | None = field(None, help="seconds after the first START when the device stalls "
                                   "(no ticks, no replies)")
    stall_for: float = field(1.0, help="how long a stall lasts, seconds")
    disconnect_at: float | None = field(None, help="seconds after the first START when the device disconnects "
                                        "(port closes)")
    restart_at: float | None = field(None, help="seconds after the first START when the device restarts "
                                     "(firmware re-initialised: idle, sequence numbers from zero)")
    duration: float = field(0.0, help="stop after this many seconds (0: run until interrupted)")
    seed: int = field(0, help="seed of the link faults and the first plant reset")
    bench: bool = field(False, help="the plant as on a bench before commissioning: at rest, the pendulum hanging, "
                        "no reset noise; a RESET leaves it where it stands, and in real time it moves on while the "
                        "device is idle, as a real rig does")
    fault: str | None = field(None, help="a wiring fault of the rig: " + "; ".join(f"{k}: {v}" for k, v in
                                                                                 FAULTS.items()),
                              choices=tuple(FAULTS))
    estop_stdin: bool = field(False, help="the emergency stop (wiring.estop) pressed and released by lines on stdin, "
                              "`press` and `release`: a technician's hand at the simulated rig (`bpd rig check "
                              "--port sim --estop` plays one)")
    build_dir: str = field(".bpd-build", help="where the device library is compiled")
    view: int | None = field(None, help="serve a live view of the rig on http://127.0.0.1:PORT/ (--view alone: "
                             "port 8765): state, action, tick timing, deadline misses as the device sends them, "
                             "then a summary once the rig stops")
    view_linger: float = field(10.0, help="with --view: seconds at most the page stays served after the rig "
                               "stopped for the summary to reach it (it stops once a page has it)")


class Link:
    """One direction of the wire: delay, dropped and corrupted bytes."""

    def __init__(self, delay_s: float, drop: float, corrupt: float, rng: random.Random) -> None:
        self.delay, self.drop, self.corrupt, self.rng = delay_s, drop, corrupt, rng
        self.queue: deque[tuple[float, bytes]] = deque()

    def send(self, data: bytes, now: float) -> None:
        if not data:
            return
        if self.drop or self.corrupt:
            out = bytearray()
            for b in data:
                r = self.rng.random()
                if r < self.drop:
                    continue
                if r < self.drop + self.corrupt:
                    b ^= 1 << self.rng.randrange(8)
                out.append(b)
            data = bytes(out)
        self.queue.append((now + self.delay, data))

    def due(self, now: float) -> bytes:
        out = bytearray()
        while self.queue and self.queue[0][0] <= now:
            out += self.queue.popleft()[1]
        return bytes(out)

    def next_due(self) -> float | None:
        return self.queue[0][0] if self.queue else None


def _time_lapse(rig: SimRig) -> str:
    """Where the plant steps more or less time a tick than the tick lasts (a --period-us on a rig whose plant keeps
    its own step: gym-inverted-pendulum's frame_skip), how much faster or slower than real time it runs."""
    plant_us = rig.plant.substeps * rig.plant.model.opt.timestep * 1e6
    ratio = plant_us / rig.spec.period_us
    if abs(ratio - 1) < 1e-6:
        return ""
    return (f", the plant stepping {plant_us / 1000:g} ms a {rig.spec.period_us / 1000:g} ms tick "
            f"({ratio:.3g}x real time)")


class SimRig:
    def __init__(self, cfg: RigSimConfig) -> None:
        self.cfg = cfg
        self.spec: RigSpec = load_rig(cfg.rig)
        if cfg.fault and not self.spec.has_encoders:
            raise BpdError(f"--fault: rig {self.spec.name} has no encoders or motor wiring to fault (a simulated rig "
                           "only; its sensors read the plant's units)")
        stops = (self.spec.wiring or {}).get("end_stops", [])
        self.stops = [float(st["at"]) for st in stops]
        if cfg.fault == "dead-end-stop" and not any(at > 0 for at in self.stops):  # before the build: said at once
            raise BpdError(f"--fault dead-end-stop: rig {self.spec.name} has no end stop on the positive side")
        if cfg.fault == "swapped-end-stops" and len({at > 0 for at in self.stops}) < 2:
            raise BpdError(f"--fault swapped-end-stops: rig {self.spec.name} has no end stops on both sides to swap")
        self.has_estop = "estop" in (self.spec.wiring or {})
        for what in [*([f"--fault {cfg.fault}"] if cfg.fault in ESTOP_FAULTS else []),
                     *(["--estop-stdin"] if cfg.estop_stdin else [])]:
            if not self.has_estop:
                raise BpdError(f"{what}: rig {self.spec.name} has no emergency stop in its wiring (wiring.estop)")
        if cfg.period_us:
            self.spec.period_us = int(cfg.period_us)
        self.lib = build_device_library(Path(cfg.build_dir), self.spec, Path(cfg.policy) if cfg.policy else None,
                                        Path(cfg.classical) if cfg.classical else None)
        self.device = SoftwareDevice(self.spec, self.lib)
        self.plant = Plant(bench_spec(self.spec) if cfg.bench else self.spec)
        self.plant.reset(cfg.seed)
        self.fault = cfg.fault
        self.stuck: np.ndarray | None = None
        self.noise_rng = np.random.default_rng(cfg.seed + 1)
        self.stops_active = [False] * len(self.stops)
        self.hand = cfg.estop_stdin  # stdin read for the hand's lines until it closes
        self.hand_lines = b""
        self.estop_pressed = False  # by the hand
        self.estop_active = False  # the input as the firmware reads it (a fault between the two)
        rng = random.Random(cfg.seed)
        d = cfg.link_delay_ms / 1000
        self.up = Link(d, cfg.drop_rate, cfg.corrupt_rate, rng)    # device -> host
        self.down = Link(d, cfg.drop_rate, cfg.corrupt_rate, rng)  # host -> device
        lat_steps = int(round(cfg.actuation_latency_us * 1e-6 / self.plant.model.opt.timestep))
        self.act_queue: deque = deque([self.device.actuator()] * lat_steps)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.closed = False
        self.out_pending = bytearray()
        self.watch: SimWatch | None = None  # --view: what the device sends, shown as it leaves

    # -- I/O -----------------------------------------------------------------
    def _pump(self, now: float, wait: float = 0.0) -> None:
        """Move bytes: host -> link -> device, device -> link -> host; wait up to `wait` seconds."""
        if self.closed:
            time.sleep(max(wait, 0))
            return
        deadlines = [d for d in (self.up.next_due(), self.down.next_due()) if d is not None]
        if deadlines:
            wait = max(0.0, min(wait, min(deadlines) - now))
        try:
            r, _, _ = select.select([self.master], [], [], max(wait, 0.0))
            if r:
                self.down.send(os.read(self.master, 65536), time.perf_counter())
        except OSError:  # no reader on the other side yet, or it closed: keep the device alive
            pass
        now = time.perf_counter()
        self.device.rx(self.down.due(now))
        seed = self.device.take_reset()
        if seed is not None and not self.cfg.bench:  # a rig on the bench stays where it stands, as a board's does
            self.plant.reset(seed)
        sent = self.device.tx()
        if self.watch is not None:
            self.watch.feed(sent, self.device.status(), self.device.limits())
        self.up.send(sent, now)
        self.out_pending += self.up.due(now)
        if self.out_pending:
            try:
                n = os.write(self.master, self.out_pending)
                del self.out_pending[:n]
            except BlockingIOError:  # the host is not reading: hold the bytes (lockstep waits on them)
                pass
            except OSError:
                self.out_pending.clear()

    def _sensors(self) -> np.ndarray:
        """The plant's raw readings as the board delivers them, with the wiring fault if any."""
        raw = self.plant.sensors()
        s, f = self.spec, self.fault
        if f == "reversed-encoder":
            raw[s.angle_index] = -raw[s.angle_index]
        elif f == "wrong-counts":
            raw[s.angle_index] *= 2
        elif f == "stuck-sensor":
            if self.stuck is None:
                self.stuck = raw.copy()
            raw[s.angle_index] = self.stuck[s.angle_index]
        elif f == "noisy-sensor":
            raw[s.pos_index] += np.float32(np.round(self.noise_rng.normal(0, 30)))
        elif f == "swapped-encoders":
            if self.stuck is None:
                self.stuck = raw.copy()  # each input's reading at power-on, from which it counts the other's travel
            p, q, p0 = s.pos_index, s.angle_index, self.stuck
            raw[p], raw[q] = p0[p] + raw[q] - p0[q], p0[q] + raw[p] - p0[p]
        return raw

    def _read_hand(self) -> None:
        """--estop-stdin: the lines on stdin so far, each `press` or `release` (anything else said on stderr)."""
        while self.hand and select.select([0], [], [], 0)[0]:
            data = os.read(0, 4096)
            if not data:  # stdin closed: the hand has gone, the button stays as it was left
                self.hand = False
            *lines, self.hand_lines = (self.hand_lines + data).split(b"\n")
            for line in (x.strip().decode(errors="replace") for x in lines):
                if line in ("press", "release"):
                    self.estop_pressed = line == "press"
                elif line:
                    print(f"--estop-stdin: {line[:40]!r} is neither press nor release", file=sys.stderr, flush=True)

    def _update_stops(self) -> None:
        """End stops at the true position and the emergency stop as the hand left it: one that closes stops the run
        (unless it is the dead one); a stuck emergency stop stays active once pressed. As a board's tick
        (bpd_stops_ending): the emergency stop, which blocks both directions, ends a run at every tick while it is
        held, not only on its press, so a START while it is held ends at the first tick and its release restarts
        nothing (ISO 13850); a held end stop ends no new run (it may drive away from it)."""
        x = float(self.plant.state()[self.spec.pos_index])
        for i, at in enumerate(self.stops):
            active = x >= at if at > 0 else x <= at
            if self.fault == "dead-end-stop" and at > 0:
                active = False
            if active and not self.stops_active[i]:
                self.device.external_stop()
            self.stops_active[i] = active
        self._read_hand()
        active = self.estop_pressed and self.fault != "dead-estop" or self.estop_active and self.fault == "stuck-estop"
        if active:  # outside a run: nothing (a press while idle is dropped, as a board's); its own flag in the STATE
            self.device.external_stop(estop=True)
        self.estop_active = active

    def _apply(self) -> None:
        u = self.device.actuator()
        side = -1 if self.fault == "swapped-end-stops" else 1  # swapped: the input read is the other side's
        for at, active in zip(self.stops, self.stops_active):  # a pressed stop blocks commands to its side
            if active:
                u = np.where(u * at * side > 0, 0.0, u)
        if self.estop_active:  # the emergency stop held blocks every command
            u = np.zeros_like(u)
        if self.fault == "reversed-motor":
            u = -u
        elif self.fault == "dead-motor":
            u = np.zeros_like(u)
        self.act_queue.append(u)
        self.plant.substep(self.act_queue.popleft())

    def _awaiting_answer(self) -> bool:
        st = self.device.status()
        return st["state"] == STATES["running"] and st["ticks_without_action"] > 0

    # -- the loop --------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        period = self.spec.period_us * 1e-6
        sub = period / self.plant.substeps
        t0 = time.perf_counter()
        next_tick = t0
        clock_us, clock_set = 0, time.perf_counter()  # lockstep: the device time last set, and when
        stalled_until = None
        started = None  # wall time of the first tick while running: fault injection counts from it
        while not should_stop():
            now = time.perf_counter()
            if self.cfg.duration and now - t0 >= self.cfg.duration:
                break
            elapsed = now - started if started is not None else -1.0
            if self.cfg.disconnect_at is not None and 0 <= self.cfg.disconnect_at <= elapsed and not self.closed:
                os.close(self.master)
                os.close(self.slave)
                self.closed = True
            if self.cfg.restart_at is not None and 0 <= self.cfg.restart_at <= elapsed:
                self.device = SoftwareDevice(self.spec, self.lib)  # power-on state: idle, counters zero
                clock_us, clock_set = 0, time.perf_counter()  # and its clock from zero
                self.cfg.restart_at = None
                started = None
                continue
            if self.cfg.stall_at is not None and stalled_until is None and 0 <= self.cfg.stall_at <= elapsed:
                stalled_until = now + self.cfg.stall_for
            if stalled_until is not None and now < stalled_until:
                time.sleep(min(0.01, stalled_until - now))
                next_tick = time.perf_counter()
                continue
            st = self.device.status()
            running = st["state"] == STATES["running"]
            if running and started is None:
                started = now
            if not self.cfg.lockstep:
                if now < next_tick:
                    self._pump(now, next_tick - now)
                    continue
                next_tick += period
                if next_tick < now:  # the simulator itself fell behind: skip, do not catch up
                    next_tick = now + period
                self.device.set_time(int((now - t0) * 1e6), wall_clock=True)
            else:
                if not running or len(self.out_pending) > 4096:
                    if not running:  # the stops read while idle too, as a board's: a press now ends no later run
                        self._update_stops()
                    self._pump(now, 0.002)
                    continue
                # one period after the previous tick, or later if the wait for the host took longer
                clock_us = max(clock_us + self.spec.period_us, clock_us + int((now - clock_set) * 1e6))
                clock_set = time.perf_counter()
                self.device.set_time(clock_us, wall_clock=True)
            self._update_stops()
            self.device.set_sensors(self._sensors())
            self.device.tick()
            self._pump(time.perf_counter())
            idle = not running or self.device.status()["state"] != STATES["running"]
            if idle and not (self.cfg.bench and not self.cfg.lockstep):
                continue  # the plant is frozen unless running, from the tick that ended a run on
            if self.cfg.lockstep:
                deadline = time.perf_counter() + self.cfg.action_timeout  # the host's answer (or a timeout)
                while self._awaiting_answer() and time.perf_counter() < deadline and not should_stop():
                    self._pump(time.perf_counter(), 0.001)
                for _ in range(self.plant.substeps):
                    self._apply()
            else:
                for k in range(self.plant.substeps):
                    target = next_tick - period + (k + 1) * sub
                    while (n := time.perf_counter()) < target:
                        self._pump(n, target - n)
                    self._apply()

    def close(self) -> None:
        if not self.closed:
            os.close(self.master)
            os.close(self.slave)
            self.closed = True


def bench_spec(spec: RigSpec) -> RigSpec:
    """The rig as it stands on a bench: at rest, the pendulum hanging (pi from upright), no reset noise."""
    q = [0.0] * spec.n_pos
    q[spec.angle_index] = math.pi
    return replace(spec, raw={**spec.raw, "initial_qpos": q, "reset_noise": 0.0})


def rig_sim(cfg: RigSimConfig) -> None:
    check_ranges(cfg, {"period_us": (50, 10_000_000), "link_delay_ms": (0, 10_000), "drop_rate": (0, 1),
                       "corrupt_rate": (0, 1), "actuation_latency_us": (0, 10_000_000), "stall_at": (0, None),
                       "stall_for": (0, None), "disconnect_at": (0, None), "restart_at": (0, None),
                       "duration": (0, None), "seed": (0, 2**31 - 1)})
    if cfg.drop_rate + cfg.corrupt_rate > 1:
        raise BpdError(f"--drop-rate plus --corrupt-rate must be at most 1 (a byte is dropped or corrupted, not both; "
                       f"got {cfg.drop_rate:g} + {cfg.corrupt_rate:g})")
    if cfg.policy is not None:
        from export.verify import verify_export
        verify_export(cfg.policy)  # only a checked export is compiled into the device
    if cfg.classical is not None:
        from export.verify import verify_export
        verify_export(cfg.classical, handover=True)
    from bpd.io import check_output_dir
    check_output_dir(cfg.build_dir)
    with LiveView(cfg.view, cfg.view_linger) as view:  # a busy port is refused before the rig is built
        rig = SimRig(cfg)
        if view.serving:
            rig.watch = SimWatch(rig.spec, view)
        mode = "lockstep" if cfg.lockstep else "realtime"
        stopped_by = serve(rig, f"rig {rig.spec.name}: {mode}, {1e6 / rig.spec.period_us:.0f} Hz, device policy: "
                           f"{'yes' if cfg.policy else 'no'}" + (", hand-over" if cfg.classical else "")
                           + (", on the bench" if cfg.bench else "") + _time_lapse(rig)
                           + (", the emergency stop under stdin's press and release" if cfg.estop_stdin else "")
                           + (f", fault: {cfg.fault} ({FAULTS[cfg.fault]})" if cfg.fault else "")
                           + (f"; live view: {view.url}" if view.serving else ""), view.stop_waiting)
        if rig.watch is not None:
            ended = {"SIGTERM": "stopped (SIGTERM)", "SIGHUP": "stopped (SIGHUP)",
                     "SIGINT": "interrupted (Ctrl-C)"}.get(
                stopped_by or "", f"--duration {cfg.duration:g} s reached")
            view.finish(rig.watch.summary(ended, rig.device.status()))
            if view.buffer.polled.is_set():
                print(f"live view: the summary waits for the page (at most {cfg.view_linger:g} s; Ctrl-C to "
                      "leave now)", file=sys.stderr, flush=True)


def serve(rig, banner: str, on_signal_again: Callable[[], None] | None = None) -> str | None:
    """Print the rig's port (stdout, for the parent) and a banner (stderr), run it until SIGTERM, SIGINT or
    SIGHUP, and close it on every way out. Returns the signal's name (None: the rig stopped by itself);
    a signal after the first calls `on_signal_again`."""
    stop: dict = {"by": None}

    def on_signal(signum: int, *_: object) -> None:
        if stop["by"] is None:
            stop["by"] = signal.Signals(signum).name
        elif on_signal_again is not None:
            on_signal_again()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if sig != signal.SIGHUP or signal.getsignal(sig) is not signal.SIG_IGN:  # nohup: a closed terminal leaves it
            signal.signal(sig, on_signal)
    print(rig.path, flush=True)
    print(banner, file=sys.stderr, flush=True)
    try:
        rig.run(lambda: stop["by"] is not None)
    finally:
        rig.close()
    return stop["by"]
