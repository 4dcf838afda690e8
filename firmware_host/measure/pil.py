"""`bpd rig pil`: processor-in-the-loop. The Cortex-M firmware image (core, board layer, policy) runs
in qemu-system-arm on a modelled STM32F405 (QEMU's netduinoplus2). Its host USART is a
pseudo-terminal that any serial client, `bpd hil run` among them, opens like a USB-serial device;
the MuJoCo plant talks to the image over the second USART (boards/plant_link.c).

The run is lockstep: the plant paces the ticks, one request per control period with the raw sensor
readings, and steps the physics with the actuator the image reports once the host has answered the
STATE (in either mode), or after a timeout. QEMU counts instructions (`-icount shift=0`: one
instruction per nanosecond of virtual time, and the host's time while the core sleeps), so the
image's SysTick measures instructions per tick and per policy call (logged to ticks_pil.csv) and is
the device clock, which advances within a tick as on a board and skips ahead to keep ticks one
period apart where lockstep runs faster (boards/plant_link.c).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpd.config import field
from bpd.errors import BpdError
from bpd.io import read_json
from bpd.process import die_with_parent
from firmware_host.rig import Plant, RigSpec, load_rig
from firmware_host.wire.spec import STATES

QEMU = "qemu-system-arm"
BOARD = "stm32f4-pil"
ICOUNT_SHIFT = 0  # 2**shift ns of virtual time per instruction
PORT_READY_S = 5.0  # how long the image may take to say its plant port is ready
REPLY = struct.Struct("<cBBHBIIII")  # 'R', state, mode, ticks_without_action, reset, seed, ticks, tick and
# policy cycles; then the actuator
RUNNING = STATES["running"]


def qemu_binary() -> str:
    exe = shutil.which(QEMU)
    if exe is None:
        raise BpdError(f"{QEMU} not found: install qemu-system-arm (`make system-deps` does it on Debian)")
    return exe


@dataclass
class RigPilConfig:
    rig: str = field("gym-inverted-pendulum", help="rig name or YAML path")
    policy: str | None = field(None, help="export directory: the image is built for it (bpd firmware build "
                               "--board stm32f4-pil) unless --elf is given")
    classical: str | None = field(None, help="a classical export for hand-over mode (`bpd classical export "
                                  "--handover`): the image links it beside the policy (rule 17)")
    elf: str | None = field(None, help="a firmware image built by `bpd firmware build --board stm32f4-pil`")
    seed: int = field(0, help="seed of the first plant reset")
    log: str | None = field(None, help="per-tick CSV of instruction counts (default: none)")
    action_timeout: float = field(5.0, help="seconds the plant waits for the host's answer to each state")
    build_dir: str | None = field(None, help="where the image is built (default: EXPORT/build-cortex-m4f-firmware-"
                                  "stm32f4-pil-RIG)")
    duration: float = field(0.0, help="stop after this many seconds (0: run until interrupted)")
    restart_at: float | None = field(None, help="seconds after the first START when the image restarts (a system "
                                     "reset, as a brown-out or the reset pin would)")


def pil_image(cfg: RigPilConfig, spec: RigSpec) -> tuple[Path, dict]:
    """The ELF to run and its build report: given, or built for the export and rig."""
    if cfg.elf:
        elf = Path(cfg.elf)
        if not elf.is_file():
            raise BpdError(f"no firmware image {elf}")
        with open(elf, "rb") as f:
            if f.read(4) != b"\x7fELF":  # QEMU would start it and the plant channel close without a word why
                raise BpdError(f"{elf} is not a firmware image (no ELF header): give the bpd_firmware.elf of "
                               f"`bpd firmware build --board {BOARD}`")
        rep_path = elf.with_name("build_report.json")
        report = read_json(rep_path, "build report") if rep_path.is_file() else {}
        if report.get("image", "firmware") != "firmware":  # no core, no plant port: QEMU would time out on it
            raise BpdError(f"{elf} is a {report['image']} image (the policy and an entry point, no firmware): build "
                           f"the firmware with `bpd firmware build EXPORT --board {BOARD} --rig {spec.name}`")
        if report.get("board", BOARD) != BOARD or report.get("rig", spec.name) != spec.name:
            raise BpdError(f"{elf} was built for board {report.get('board')} and rig {report.get('rig')}, "
                           f"not {BOARD} and {spec.name}: build it with --board {BOARD} --rig {spec.name}")
        return elf, report
    if not cfg.policy:
        raise BpdError("give --policy EXPORT_DIR (the image is built for it) or --elf IMAGE")
    from firmware_host.measure.build import FirmwareBuildConfig, firmware_build

    rep = firmware_build(FirmwareBuildConfig(export=cfg.policy, target="cortex-m4f", board=BOARD, rig=cfg.rig,
                                             out=cfg.build_dir, classical=cfg.classical))
    return Path(rep["elf"]), rep


class PilRig:
    """QEMU running the image, the plant on its second USART, the host USART on a pty."""

    def __init__(self, cfg: RigPilConfig) -> None:
        self.cfg = cfg
        self.spec = load_rig(cfg.rig)
        qemu = qemu_binary()  # before the image is built: a missing QEMU is said first, not after the build
        self.elf, report = pil_image(cfg, self.spec)
        self.clock_mhz = int(report.get("clock_mhz") or 168)
        self.n_raw = self.spec.n_pos * (2 if self.spec.measured_velocity else 1)
        self.act_dim = self.spec.act_dim
        self.reply_len = REPLY.size + 4 * self.act_dim
        self.plant = Plant(self.spec)
        self.plant.reset(cfg.seed)
        self._tmp = tempfile.mkdtemp(prefix="bpd-pil-")
        sock_path = os.path.join(self._tmp, "plant.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:  # the socket's directory goes with a QEMU that does not start, as with one that stops
            srv.bind(sock_path)
            srv.listen(1)
            srv.settimeout(10.0)
            args = [qemu, "-M", "netduinoplus2", "-nographic", "-monitor", "none", "-nodefaults",
                    "-icount", f"shift={ICOUNT_SHIFT}", "-kernel", str(self.elf),
                    "-serial", "pty", "-serial", f"unix:{sock_path}"]
            self.qemu = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         preexec_fn=die_with_parent)
        except BaseException as e:
            srv.close()
            shutil.rmtree(self._tmp, ignore_errors=True)
            if isinstance(e, OSError):
                raise BpdError(f"QEMU did not start: {qemu}: {e.strerror or e}") from None
            raise
        try:
            self.conn, _ = srv.accept()
            self.path = self._pty_path()
        except (OSError, BpdError) as e:
            self.close()
            raise BpdError(f"QEMU did not start the image: {e}") from None
        except BaseException:  # stopped (Ctrl-C, SIGTERM) while QEMU starts: it and the image's files go now
            self.close()
            raise
        finally:
            srv.close()
        self.conn.settimeout(PORT_READY_S)
        try:
            self._recv()  # the image says its plant port is ready
        except (OSError, BpdError) as e:
            self.close()
            why = f"no answer in {PORT_READY_S:g} s" if isinstance(e, TimeoutError) else e
            board = "" if report else (f" (no build_report.json beside {self.elf.name} says which board it is for: "
                                       f"the plant port is the `bpd firmware build --board {BOARD}` image's)")
            raise BpdError(f"the image did not start its plant port: {why}{board}") from None
        except BaseException:
            self.close()
            raise
        self._log = None
        if cfg.log:
            try:
                self._log = open(cfg.log, "w", newline="")
            except OSError:
                self.close()  # QEMU ends with the failure, never left running
                raise
            self._csv = csv.writer(self._log)
            self._csv.writerow(["tick", "t_us", "state", "mode", "tick_instructions", "policy_instructions"])

    def _pty_path(self) -> str:
        assert self.qemu.stdout is not None  # started with stdout=PIPE
        line = self.qemu.stdout.readline()
        m = re.search(r"(/dev/pts/\d+)", line)
        if not m:
            raise BpdError(f"no pseudo-terminal in QEMU's output: {line.strip() or 'nothing'}")
        return m.group(1)

    def instructions(self, cycles: int) -> int:
        """Image cycles (SysTick at the core clock) to instructions under -icount."""
        return round(cycles * 1000 / self.clock_mhz / 2 ** ICOUNT_SHIFT)

    # -- the plant channel ---------------------------------------------------------
    def _recv(self) -> dict:
        buf = bytearray()
        while len(buf) < self.reply_len:
            chunk = self.conn.recv(self.reply_len - len(buf))
            if not chunk:
                raise BpdError("the image closed the plant channel")
            buf += chunk
        tag, state, mode, twa, reset, seed, ticks, tick_c, pol_c = REPLY.unpack_from(buf)
        if tag != b"R":
            raise BpdError("the plant channel lost step with the image")
        act = np.frombuffer(bytes(buf[REPLY.size:]), "<f4").astype(np.float64)
        return {"state": state, "mode": mode, "ticks_without_action": twa, "reset": seed if reset else None,
                "ticks": ticks, "tick_cycles": tick_c, "policy_cycles": pol_c, "actuator": act}

    def query(self) -> dict:
        self.conn.sendall(b"Q")
        return self._take_reset(self._recv())

    def tick(self, raw: np.ndarray) -> dict:
        self.conn.sendall(b"T" + struct.pack(f"<{self.n_raw}f", *map(float, raw[:self.n_raw])))
        return self._take_reset(self._recv())

    def _take_reset(self, st: dict) -> dict:
        if st["reset"] is not None:
            self.plant.reset(st["reset"])
        return st

    # -- the loop ------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        period = self.spec.period_us
        sim_us, ticks = 0, 0
        ran = self.query()["ticks"]
        t0 = time.perf_counter()
        started = None  # wall time of the first tick while running: a restart counts from it
        while not should_stop():
            now = time.perf_counter()
            if self.cfg.duration and now - t0 >= self.cfg.duration:
                break
            if self.qemu.poll() is not None:
                raise BpdError(f"QEMU exited (code {self.qemu.returncode})")
            if self.cfg.restart_at is not None and started is not None and now - started >= self.cfg.restart_at:
                self.conn.sendall(b"X")
                self._recv()  # the restarted image says its plant port is ready
                self.cfg.restart_at, ran = None, self.query()["ticks"]
                continue
            st = self.query()
            if st["state"] == RUNNING and started is None:
                started = now
            if st["state"] != RUNNING:
                time.sleep(0.002)
                continue
            sim_us += period
            st = self.tick(self.plant.sensors())
            if st["ticks"] != ran and self._log:  # a tick ran (a STOP may have come first)
                ticks += 1
                row = [ticks, sim_us, st["state"], st["mode"], self.instructions(st["tick_cycles"]),
                       self.instructions(st["policy_cycles"])]
                self._csv.writerow(row)
                if ticks % 200 == 0:
                    self._log.flush()
            ran = st["ticks"]
            if st["state"] != RUNNING:
                continue  # the plant is frozen unless running, from the tick that ended a run on
            deadline = time.perf_counter() + self.cfg.action_timeout  # the host's answer, in either mode
            while st["ticks_without_action"] and st["state"] == RUNNING and time.perf_counter() < deadline:
                time.sleep(0.0002)
                st = self.query()
            for _ in range(self.plant.substeps):
                self.plant.substep(st["actuator"])

    def _close_log(self) -> None:
        if self._log:
            self._log.close()

    def close(self) -> None:
        for closer in (lambda: self.conn.close(), self._close_log):
            try:
                closer()
            except Exception:
                pass
        if self.qemu.poll() is None:
            self.qemu.terminate()
            try:
                self.qemu.wait(5)
            except subprocess.TimeoutExpired:
                self.qemu.kill()
        shutil.rmtree(self._tmp, ignore_errors=True)


def rig_pil(cfg: RigPilConfig) -> None:
    from firmware_host.rig.sim import serve

    rig = PilRig(cfg)
    serve(rig, f"rig {rig.spec.name}: processor-in-the-loop, {rig.elf.name} on QEMU netduinoplus2 (STM32F405), "
               f"lockstep, -icount shift={ICOUNT_SHIFT}")
