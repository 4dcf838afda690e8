"""`bpd firmware flash BUILD --probe ...`: write a board build's image to the board through pyOCD
(the optional `flash` extra: `pip install -e '.[flash]'` in the project), then reset it so it starts.

BUILD is a firmware build directory (`bpd firmware build --board nucleo-f446|stm32f4`: its
build_report.json names the board, hence the part pyOCD programs) or its bpd_firmware.elf. A missing
pyOCD, a build for no real board, a probe that is not there, a part pyOCD has no support for yet (its
CMSIS pack, installed once with `pyocd pack install PART`) and any other pyOCD failure are each one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bpd.config import field
from bpd.errors import BpdError
from bpd.io import read_json

# The part each real board's build is for, by pyOCD's target name: a CMSIS pack's part number, lower case (neither
# part is built into pyOCD; `pyocd pack install` adds it).
PYOCD_TARGETS = {"nucleo-f446": "stm32f446retx", "stm32f4": "stm32f405rgtx"}


@dataclass
class FirmwareFlashConfig:
    build: str = field(help="firmware build directory (or its bpd_firmware.elf) for a real board", positional=True)
    probe: str | None = field(None, help="the debug probe's unique id (`pyocd list`); default: the only one attached")
    target: str | None = field(None, help="pyOCD target name, overriding the one of the build's board")


def image_of(build: str | Path) -> tuple[Path, str]:
    """The ELF of a board build and the board it was built for, or one line."""
    p = Path(build)
    d = p.parent if p.suffix == ".elf" else p
    elf = p if p.suffix == ".elf" else p / "bpd_firmware.elf"
    if not elf.is_file():
        inside = sorted(e.parent for e in d.glob("*/bpd_firmware.elf")) if d.is_dir() else []
        boards = [str(b) for b in inside if _board(b) in PYOCD_TARGETS]  # those for a generic or QEMU board: refused
        raise BpdError(f"{build}: no bpd_firmware.elf (give a `bpd firmware build --board ...` directory"
                       + (f"; the builds in it for a real board: {', '.join(boards)})" if boards else
                          f"; none in it is for a real board: build with --board {' or '.join(PYOCD_TARGETS)} and "
                          "--rig)" if inside else ")"))
    with open(elf, "rb") as f:
        if f.read(4) != b"\x7fELF":  # pyOCD would take it by its name and fail inside its ELF reader
            raise BpdError(f"{elf} is not a firmware image (no ELF header): build it again with `bpd firmware build "
                           "--board ...`")
    board = _board(d, strict=True)
    if board not in PYOCD_TARGETS:
        raise BpdError(f"{build}: built for board {board or 'unknown'}, not a real board "
                       f"({', '.join(PYOCD_TARGETS)}): rebuild with --board")
    return elf, str(board)


def _board(d: Path, strict: bool = False) -> str | None:
    """The board a build directory's report names (None without one; a corrupt one is an error when strict)."""
    if not (d / "build_report.json").is_file():
        return None
    try:
        rep = read_json(d / "build_report.json", "build report")
    except BpdError:
        if strict:
            raise
        return None
    return rep.get("board") if isinstance(rep, dict) else None


def firmware_flash(cfg: FirmwareFlashConfig) -> str:
    elf, board = image_of(cfg.build)
    try:
        from pyocd.core.exceptions import Error as PyocdError
        from pyocd.core.exceptions import TargetSupportError
        from pyocd.core.helpers import ConnectHelper
        from pyocd.core.session import Session
        from pyocd.flash.file_programmer import FileProgrammer
    except ImportError:
        raise BpdError("pyOCD is not installed: pip install -e '.[flash]' in the bpd checkout "
                       "(or pip install pyocd)") from None
    target = cfg.target or PYOCD_TARGETS[board]
    try:
        # the probe chosen here, not by ConnectHelper.session_with_chosen_probe: that prints its own red line when no
        # probe is found (beside this one) and asks on the terminal when several are
        probes = ConnectHelper.get_all_connected_probes(blocking=False, unique_id=cfg.probe, print_wait_message=False)
        which = f"probe {cfg.probe}" if cfg.probe else "debug probe"
        if not probes:
            raise BpdError(f"no {which} found: plug in the board's ST-LINK (USB) and check `pyocd list`")
        if len(probes) > 1:  # pyOCD matches an id by a part of it
            raise BpdError(f"{len(probes)} debug probes {'match ' + cfg.probe if cfg.probe else 'attached'} "
                           f"({', '.join(p.unique_id for p in probes)}): name one with --probe")
        session = Session(probes[0], target_override=target)
        with session:
            FileProgrammer(session).program(str(elf))
            session.target.reset()
    except TargetSupportError:
        raise BpdError(f"pyOCD has no support for {target} yet: install its pack once (`pyocd pack install "
                       f"{target}`), then flash again") from None
    except PyocdError as e:  # a probe that does not connect, a transfer or programming error
        what = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
        raise BpdError(f"pyOCD could not flash {elf} to {target}: {what} (is the board powered and its "
                       "ST-LINK jumpers on?)") from None
    return f"{elf} -> {target} ({board}) through {session.probe.unique_id}"
