"""A session with a device over anything pyserial opens (a device path, a pty, socket://):
handshake, configuration, start/stop/reset, frames in and actions out.

Transport: serial.serial_for_url. Codec: firmware_host.wire.codec (pure). This layer adds sequence numbers,
timeouts and the safe close (stop before the port closes).
"""

from __future__ import annotations

import errno
import logging
import math
import struct
import time
from collections import deque

from bpd.errors import BpdError
from firmware_host.wire.codec import Frame, Parser, encode
from firmware_host.wire.spec import ACK, BY_NAME, FAULTS, MODES, PROTOCOL_VERSION

log = logging.getLogger("bpd.hil")


class LinkError(BpdError):
    """The device did not answer, answered wrongly, or went away."""


class LinkTimeout(LinkError):
    """The awaited message did not arrive in time (the one condition a retry can cure)."""


class DeviceRestarted(LinkError):
    """An INFO with another boot counter than the session's: the device started again (a brown-out, a
    reset) and is idle with its actuator at zero."""

    def __init__(self, before: int, after: int) -> None:
        self.before, self.after = before, after
        super().__init__(f"the device restarted (boot {before} -> {after}): it is idle, its actuator at zero")


class DeviceFault(LinkError):
    """The device reported a FAULT (it has zeroed its actuator)."""

    def __init__(self, code: int, detail: int) -> None:
        self.code, self.detail = code, detail
        name = next((k for k, v in FAULTS.items() if v == code), str(code))
        super().__init__(f"device fault: {name}")


# What to do about the usual reasons a board's port does not open (Linux).
PORT_HINTS = {
    errno.ENOENT: " (is the board plugged in? its port is one of `ls /dev/ttyACM* /dev/ttyUSB*`)",
    errno.EACCES: " (the port's group may open it: sudo usermod -aG dialout $USER, then log in again)",
    errno.EBUSY: " (another program holds it: close any serial monitor or other `bpd` on it)",
}


def check_rig_device(info: dict, spec, period: int) -> None:
    """The device's INFO against the rig and the period asked for: its sizes, and its period (a device takes its own
    only: CONFIG, docs/protocol.md), each a one-line LinkError naming the fix. After these a rejected CONFIG is one of
    the bounds the firmware holds it to (DeviceLink.configure)."""
    if info["obs_dim"] != spec.obs_dim or info["act_dim"] != spec.act_dim:
        raise LinkError(f"device sizes {info['obs_dim']}->{info['act_dim']} differ from the rig's "
                        f"{spec.obs_dim}->{spec.act_dim}: the board runs another rig's firmware (bpd firmware build "
                        f"--rig {spec.name})")
    if info["period_us"] != period:
        fix = ("leave out --period-us (the device runs the rig's period)" if info["period_us"] == spec.period_us
               else f"give --period-us {info['period_us']}, or build the device's firmware for rig {spec.name} "
                    f"(bpd firmware build --rig {spec.name})")
        raise LinkError(f"the device's control period is {info['period_us']} us, the trial's {period} us: {fix}")


def _f32(x: float) -> float:
    """x as the wire carries it (binary32, beyond its range infinite): the device compares that."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


def check_config(spec, watchdog_ticks: int, action_limit: float, pos_limit: float, angle_limit: float) -> None:
    """A CONFIG against the rig's own bounds, as a device built for the rig holds it (bpd_fw.c, config_ok), before
    it is sent: a one-line LinkError for a watchdog longer than the rig's (a host may shorten it, never lengthen it),
    an action limit above the rig's, a position limit not short of its track (its hard stops; a rig without one has
    no such bound, nor has the angle limit: a swing-up pole swings freely), or a limit not positive and finite."""
    limits = {"action": action_limit, "position": pos_limit, "angle": angle_limit}
    if bad := [k for k, v in limits.items() if not (math.isfinite(_f32(v)) and _f32(v) > 0)]:
        raise LinkError(f"the {bad[0]} limit {limits[bad[0]]:g} is not a positive finite number: no device takes it")
    if watchdog_ticks < 1:
        raise LinkError(f"a watchdog of {watchdog_ticks} ticks: no device takes it (1 tick at least)")
    if watchdog_ticks > spec.watchdog_ticks:
        raise LinkError(f"a watchdog of {watchdog_ticks} ticks is longer than rig {spec.name}'s own "
                        f"({spec.watchdog_ticks}): a host may shorten it, never lengthen it; the device would "
                        "refuse it")
    if _f32(action_limit) > _f32(float(spec.limits["action"])):
        raise LinkError(f"the action limit {action_limit:g} is above rig {spec.name}'s own "
                        f"({float(spec.limits['action']):g}): a host may narrow it, never widen it; the device would "
                        "refuse it")
    track = spec.track
    if track and _f32(pos_limit) >= _f32(track):
        raise LinkError(f"the position limit {pos_limit:g} is not short of rig {spec.name}'s track (+-{track:g}, its "
                        "hard stops: the cart would stop only on them): the device would refuse it")


class DeviceLink:
    # A read returns as soon as bytes arrive, or after this many seconds. Fixed at open: assigning
    # pyserial's timeout reconfigures the port (termios calls), which has no place in the tick loop.
    READ_SLICE = 0.002

    def __init__(self, port: str, baud: int = 921600, write_timeout: float = 1.0) -> None:
        """write_timeout: how long a write may wait for the port to take it before LinkError (a device that stopped
        reading); an emulated device (QEMU on a loaded machine) can stall for longer than a board ever does."""
        import serial

        try:
            self.ser = serial.serial_for_url(port, baudrate=baud, timeout=self.READ_SLICE, write_timeout=write_timeout)
        except (serial.SerialException, ValueError, OSError) as e:
            cause = e.__context__ if isinstance(e.__context__, OSError) and e.__context__.strerror else None
            hint = PORT_HINTS.get(cause.errno or 0, "") if cause and port.startswith("/dev/") else ""
            raise LinkError(f"cannot open {port}: {cause.strerror if cause else e}{hint}") from None  # the errno once
        self.port = port
        self.parser = Parser()
        self.seq = 0
        self.frames: deque[Frame] = deque()
        self.low_latency = self._request_low_latency()
        self.info: dict | None = None
        self.stop_error: str | None = None

    def _request_low_latency(self) -> str:
        """USB-serial adapters buffer up to 16 ms by default; ask for 1 ms where the driver allows."""
        try:
            self.ser.set_low_latency_mode(True)
            return "enabled"
        except (AttributeError, NotImplementedError, ValueError, OSError) as e:
            return f"not available ({e.__class__.__name__})"

    # -- bytes -----------------------------------------------------------------
    def send(self, name: str, **fields) -> int:
        seq = self.seq
        try:
            self.ser.write(encode(name, seq, **fields))
        except Exception as e:  # serial.SerialException, OSError, write timeout
            raise LinkError(f"write to {self.port} failed: {e}") from None
        self.seq = (self.seq + 1) & 0xFFFF
        return seq

    def _read(self, block: bool) -> None:
        """Parse what the port has (waiting up to READ_SLICE for a first byte when block)."""
        try:
            waiting = self.ser.in_waiting
            data = self.ser.read(max(1, waiting)) if block or waiting else b""
        except Exception as e:
            raise LinkError(f"read from {self.port} failed: {e}") from None
        if data:
            self.frames.extend(self.parser.feed(data))

    def poll(self, timeout: float) -> Frame | None:
        """The next frame, waiting at most timeout seconds (plus one read slice). An INFO whose boot
        counter differs from the session's raises DeviceRestarted."""
        deadline = time.perf_counter() + timeout
        while not self.frames:
            if time.perf_counter() >= deadline:
                return None
            self._read(block=True)
        f = self.frames.popleft()
        if f.name == "info" and self.info is not None and f.fields["boot"] != self.info["boot"]:
            raise DeviceRestarted(self.info["boot"], f.fields["boot"])
        return f

    def dropped(self, timeout: float = 1.0) -> dict | None:
        """The device's drop counters since power-on (INFO's rx_dropped, actions_dropped), or None
        if it does not answer."""
        self.send("hello", protocol=PROTOCOL_VERSION)
        try:
            f = self.wait_for("info", timeout).fields
        except LinkTimeout:
            return None
        return {k: f[k] for k in ("rx_dropped", "actions_dropped")}

    def check_restart(self, timeout: float = 0.5) -> None:
        """Ask for an INFO: DeviceRestarted if the device started again since the handshake (its
        unasked INFO may have been lost), nothing if it answers with the same boot or not at all."""
        self.send("hello", protocol=PROTOCOL_VERSION)
        try:
            self.wait_for("info", timeout)
        except LinkTimeout:
            pass

    def next_states(self, timeout: float) -> list[Frame]:
        """The next STATE and every newer one already received, oldest first: a host that answers
        only the last one skips, never catches up. A FAULT raises DeviceFault; silence raises."""
        while True:
            f = self.poll(timeout)
            if f is None:
                self.check_restart()
                raise LinkError(f"no state for {timeout:.1f} s: device stalled or unplugged")
            if f.name == "fault":
                raise DeviceFault(f.fields["code"], f.fields["detail"])
            if f.name == "state":
                break
        self._read(block=False)
        batch = [f]
        while self.frames and self.frames[0].name == "state":
            batch.append(self.frames.popleft())
        return batch

    def wait_for(self, name: str, timeout: float, keep_others: bool = False) -> Frame:
        deadline = time.perf_counter() + timeout
        skipped = []
        try:
            while True:
                f = self.poll(max(0.0, deadline - time.perf_counter()))
                if f is None:
                    raise LinkTimeout(f"no {name} from the device within {timeout:.1f} s")
                if f.name == name:
                    return f
                if f.name == "fault" and name != "fault":
                    raise DeviceFault(f.fields["code"], f.fields["detail"])
                if keep_others:
                    skipped.append(f)
        finally:
            self.frames.extendleft(reversed(skipped))

    def command(self, name: str, timeout: float = 1.0, tries: int = 3, **fields) -> None:
        """Send a command and wait for its ACK, resending (a new frame, a new seq) if the frame or its
        ACK was lost. An ACK answers the frame whose seq it echoes: a late ACK of an earlier try counts."""
        sent: set[int] = set()
        # a try waits two control periods and a margin for the link at least (docs/protocol.md, rule 12)
        wait = max(timeout / tries, 2e-6 * self.info["period_us"] + 0.05) if self.info else timeout / tries
        for attempt in range(tries):
            sent.add(self.send(name, **fields))
            deadline = time.perf_counter() + wait
            ack = None
            while ack is None:
                try:
                    f = self.wait_for("ack", max(0.0, deadline - time.perf_counter()))
                except LinkTimeout:
                    break
                if f.fields["of"] == BY_NAME[name].id and f.fields["echo_seq"] in sent:
                    ack = f
            if ack is None:
                continue
            if ack.fields["status"] == ACK["ok"]:
                return
            if attempt and name == "start" and any(f.name == "state" for f in self.frames):
                return  # the first START took effect and only its ACK was lost
            raise LinkError(f"the device rejected {name} {fields or ''}".strip())
        raise LinkError(f"no answer to {name} from the device after {tries} tries")

    # -- session -----------------------------------------------------------------
    def handshake(self, timeout: float = 2.0, tries: int = 4) -> dict:
        info = None
        self.info = None  # a new session: whatever boot the device now has
        for _ in range(tries):
            self.send("hello", protocol=PROTOCOL_VERSION)
            try:
                info = self.wait_for("info", timeout / tries).fields
                break
            except LinkTimeout:
                pass
        if info is None:
            raise LinkError(f"no answer to hello from {self.port} within {timeout:.1f} s: is a bpd device there?")
        if info["protocol"] != PROTOCOL_VERSION:
            raise LinkError(f"protocol version mismatch: device {info['protocol']}, host {PROTOCOL_VERSION}")
        self.info = info
        return info

    def configure(self, period_us: int, watchdog_ticks: int, mode: str, action_limit: float, pos_limit: float,
                  angle_limit: float, spec=None) -> None:
        """CONFIG, checked first (with the rig's spec) against the bounds a device built for that rig holds it to
        (check_config); a CONFIG the device refuses nonetheless is one its firmware, built for another YAML, does."""
        if spec is not None:
            check_config(spec, watchdog_ticks, action_limit, pos_limit, angle_limit)
        try:
            self.command("config", period_us=period_us, watchdog_ticks=watchdog_ticks, mode=MODES[mode],
                         action_limit=action_limit, pos_limit=pos_limit, angle_limit=angle_limit)
        except LinkError as e:
            if not str(e).startswith("the device rejected"):
                raise
            # sizes, period and mode were checked against INFO: what is left is a bound (docs/protocol.md, rule 9)
            raise LinkError(f"the device rejected the configuration (action limit {action_limit:g}, position limit "
                            f"{pos_limit:g}, angle limit {angle_limit:g}, watchdog {watchdog_ticks} ticks): its "
                            "firmware takes an action limit and a watchdog up to its rig's own only, a position limit "
                            "short of its rig's track; build and flash it for this rig YAML") from None

    def stop_and_zero(self) -> bool:
        """Stop (the device zeroes its actuator). Best effort on every exit path; False if the link
        was gone, in which case the device's watchdog zeroes the actuator."""
        try:
            self.send("stop")
            self.ser.flush()
            return True
        except Exception as e:
            self.stop_error = str(e)
            log.debug("could not send stop: %s", e)
            return False

    def close(self) -> None:
        try:
            self.stop_and_zero()
        finally:
            try:
                self.ser.close()
            except Exception:
                pass
