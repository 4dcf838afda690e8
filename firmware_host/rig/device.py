"""The firmware core (C) as a software device: compiled with the host HAL, the rig's generated
configuration and optionally an exported policy into a shared library, and driven through ctypes by
the simulated rig and the tests."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
from pathlib import Path

import numpy as np

from bpd.errors import BpdError
from export.cc import OPT, STRICT, compile_to
from firmware_host.rig import RigSpec
from firmware_host.rig.codegen import write_rig_header
from firmware_host.wire.spec import MAX_ACT

CSRC = Path(__file__).resolve().parents[1] / "c" / "core"
FW_SOURCES = ("bpd_fw.c", "bpd_wire.c", "bpd_msgs.c", "hal_host.c")


def selftest_defines(policy_dir: Path) -> list[str]:
    """-DBPD_HAVE_SELFTEST where the export stores a self-test (export/selftest.py; older exports have none)."""
    from export.selftest import FILE

    return ["-DBPD_HAVE_SELFTEST"] if (Path(policy_dir) / FILE).is_file() else []


def classical_sources(classical_dir: Path, spec: RigSpec, policy_dir: Path | None) -> tuple[list[Path], list[str]]:
    """The sources and flags that link a classical export for hand-over mode (docs/protocol.md, rule 17) beside
    the learned policy: checked to be one (`bpd classical export --handover`), for a rig with a region."""
    from export.c_export import check_export_dir
    from firmware_host.rig.classical import HANDOVER_PREFIX, HANDOVER_SELFTEST, check_designed_for

    classical_dir = check_export_dir(classical_dir)
    if policy_dir is None:
        raise BpdError("hand-over mode needs the learned policy too (--policy EXPORT_DIR)")
    if spec.handover is None:
        raise BpdError(f"rig {spec.name} has no handover block: hand-over mode needs its region")
    if not (classical_dir / HANDOVER_SELFTEST).is_file():
        raise BpdError(f"{classical_dir}: not a classical export for hand-over mode "
                       f"(make one with `bpd classical export --handover`; its names are {HANDOVER_PREFIX}_*)")
    check_designed_for(classical_dir, spec)
    return ([classical_dir / "policy.c", classical_dir / "policy_weights.c"],
            ["-DBPD_HAVE_CLASSICAL", f"-I{classical_dir}"])


def build_device_library(out_dir: Path, spec: RigSpec, policy_dir: Path | None = None,
                         classical_dir: Path | None = None, fast_tanh: bool = False) -> Path:
    """Compile the firmware core with the host HAL, the rig's generated configuration and (if given)
    the exported policy as a shared library; with classical_dir, hand-over mode's classical controller too;
    fast_tanh: the generic kernel's rational tanh (-DBPD_FAST_TANH)."""
    rig_dir = write_rig_header(spec, out_dir / f"rig-{spec.name}-{spec.period_us}").parent
    srcs = [CSRC / f for f in FW_SOURCES]
    fast = ["-DBPD_FAST_TANH"] if fast_tanh else []
    flags = [*STRICT, *OPT, "-fPIC", "-shared", *fast, f"-I{CSRC}", f"-I{rig_dir}"]
    if policy_dir is not None:
        from export.c_export import check_export_dir
        from firmware_host.rig.classical import check_designed_for

        policy_dir = check_export_dir(policy_dir)
        check_designed_for(policy_dir, spec)  # a classical controller run as the policy: of this rig's design
        srcs += [policy_dir / "policy.c", policy_dir / "policy_weights.c"]
        flags += ["-DBPD_SIM_POLICY", f"-I{policy_dir}"] + selftest_defines(policy_dir)
    if classical_dir is not None:
        c_srcs, c_flags = classical_sources(Path(classical_dir), spec, policy_dir)
        srcs, flags = srcs + c_srcs, flags + c_flags
    h = hashlib.sha256(" ".join(flags[:-1]).encode())  # the rig header's text is hashed, not its path
    for s in srcs + sorted(CSRC.glob("*.h")) + [rig_dir / "bpd_rig_config.h"] + (
            [*policy_dir.glob("*.h")] if policy_dir else []) + (
            [*Path(classical_dir).glob("*.h")] if classical_dir else []):
        h.update(Path(s).read_bytes())
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / f"libbpdfw-{h.hexdigest()[:12]}.so"
    if not lib.exists():
        kept = _kept_library(flags, srcs)
        if kept is not None and kept.is_file():
            _copy_whole(kept, lib)
        else:
            compile_to(lib, [*flags, *map(str, srcs), "-lm"], "building the device")
            if kept is not None:
                with contextlib.suppress(OSError):  # a cache that cannot be written loses the entry, not the build
                    _copy_whole(lib, kept)
    return lib


def _kept_library(flags: list[str], srcs: list[Path]) -> Path | None:
    """Where the cache (bpd/cache.py) keeps the library these sources and flags build: every trial on `--port sim`
    builds its device in a directory of its own, from the same sources as the last one (None: no cache)."""
    from bpd.cache import Key, cache_dir, toolchain
    from export.cc import find_cc

    store = cache_dir("device-lib")
    if store is None:
        return None
    cc = find_cc()
    key = Key("device-lib").text(*(f for f in flags if not f.startswith("-I")), "-lm", toolchain(cc)).preprocessed(
        cc, [f for f in flags if f != "-shared"], srcs).hexdigest()
    return store / f"libbpdfw-{key[:24]}.so" if key else None


def _copy_whole(src: Path, dst: Path) -> None:
    """Copy written whole (bpd.io.atomic_write): a process loading dst sees the whole library or none."""
    from bpd.io import atomic_write

    data = src.read_bytes()
    atomic_write(dst, lambda f: f.write(data))


class SoftwareDevice:
    """The real firmware core (C), driven through the host HAL."""

    def __init__(self, spec: RigSpec, lib: Path) -> None:
        self.lib = ctypes.CDLL(str(lib))
        rc = self.lib.bpd_sim_init()
        if rc != 0:
            raise BpdError(f"the device could not start (code {rc}): policy dimensions differ from the rig's?")
        self.act_dim = spec.act_dim
        self._act = (ctypes.c_float * MAX_ACT)()
        self._buf = (ctypes.c_uint8 * 65536)()
        self._status = (ctypes.c_uint32 * 9)()
        self.lib.bpd_sim_tx.restype = ctypes.c_size_t

    def set_time(self, us: int, wall_clock: bool = False) -> None:
        """Device time now; with wall_clock it keeps advancing with real time until the next call."""
        self.lib.bpd_sim_set_time(ctypes.c_uint32(us & 0xFFFFFFFF), ctypes.c_uint8(int(wall_clock)))

    def set_sensors(self, raw: np.ndarray) -> None:
        arr = (ctypes.c_float * len(raw))(*map(float, raw))
        self.lib.bpd_sim_set_sensors(arr, len(raw))

    def rx(self, data: bytes) -> None:
        if data:
            self.lib.bpd_sim_rx(data, ctypes.c_size_t(len(data)))

    def tick(self) -> None:
        self.lib.bpd_sim_tick()

    def external_stop(self, estop: bool = False) -> None:
        """An end stop (or, `estop`, the emergency stop) closed: zero now, the run ends at the next tick, with the
        limit stop's flag or the emergency stop's."""
        self.lib.bpd_sim_external_stop(ctypes.c_uint8(2 if estop else 1))  # BPD_STOP_EMERGENCY, BPD_STOP_END

    def actuator(self) -> np.ndarray:
        self.lib.bpd_sim_actuator(self._act)
        return np.array(self._act[:self.act_dim], np.float64)

    def tx(self) -> bytes:
        n = self.lib.bpd_sim_tx(self._buf, len(self._buf))
        return bytes(self._buf[:n])

    def take_reset(self) -> int | None:
        seed = ctypes.c_uint32()
        return seed.value if self.lib.bpd_sim_take_reset(ctypes.byref(seed)) else None

    def limits(self) -> tuple[float, float]:
        """The position and angle limits the device runs with: the rig's, or the last CONFIG's."""
        out = (ctypes.c_float * 2)()
        self.lib.bpd_sim_limits(out)
        return float(out[0]), float(out[1])

    def status(self) -> dict:
        self.lib.bpd_sim_status(self._status)
        keys = ("state", "ticks", "overruns", "watchdog_trips", "late_actions", "fault_code", "bad_frames", "mode",
                "ticks_without_action")
        return dict(zip(keys, list(self._status)))
