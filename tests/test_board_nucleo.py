"""The Nucleo-64 STM32F446RE port and the rig YAML's wiring block: the pin map generated into the
rig header, the strict check of every pin and name, the wiring table in hil/README.md rendered from
the same block, and the image built with warnings as errors (QEMU has no model of this board, so the
image is built and inspected, not run; the driver logic it calls runs in tests/test_drivers.py)."""

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import yaml

from bpd.errors import BpdError
from firmware_host.rig import load_rig
from firmware_host.rig.codegen import generate_rig_header, wiring_table
from firmware_host.rig.codegen import main as codegen_main
from tests.conftest import pendulum_export

ROOT = Path(__file__).resolve().parents[1]


def _defines(text: str) -> dict[str, str]:
    return dict(re.findall(r"^#define (BPD_(?:ENC|MOTOR|STOP|WIRING)\w*) (.+?)(?:\s+/\*.*)?$", text, re.M))


def test_pin_map_in_the_header_is_the_yaml():
    d = _defines(generate_rig_header(load_rig("desktop-cartpole")))
    assert d["BPD_ENC_TIMER"] == "{3u, 4u}"  # TIM3 cart, TIM4 pendulum
    assert (d["BPD_ENC_A_PORT"], d["BPD_ENC_A_PIN"]) == ("{0u, 1u}", "{6u, 6u}")  # PA6, PB6
    assert (d["BPD_ENC_B_PORT"], d["BPD_ENC_B_PIN"]) == ("{0u, 1u}", "{7u, 7u}")  # PA7, PB7
    assert d["BPD_ENC_INVERT"] == "{0u, 0u}"
    assert d["BPD_ENC_POWER_ON_COUNTS"] == "{0.0f, 2048.0f}"  # the pendulum hangs at power-on: pi = 2048 counts
    assert (d["BPD_MOTOR_TIMER"], d["BPD_MOTOR_CHANNEL"], d["BPD_MOTOR_PWM_PORT"], d["BPD_MOTOR_PWM_PIN"]) == \
        ("1u", "1u", "0u", "8u")  # TIM1 CH1 on PA8
    assert (d["BPD_MOTOR_DIR_PORT"], d["BPD_MOTOR_DIR_PIN"]) == ("1u", "5u")  # PB5
    assert d["BPD_MOTOR_PWM_HZ"] == "20000u" and d["BPD_MOTOR_FULL_SCALE"] == "4.0f"
    assert (d["BPD_STOP_N"], d["BPD_STOP_PORT"], d["BPD_STOP_PIN"]) == ("3u", "{2u, 2u, 2u}", "{0u, 1u, 13u}")
    # left (bit 0) blocks negative commands, right (bit 1) positive ones, the e-stop (bit 2) both
    assert (d["BPD_STOP_BLOCKS_POSITIVE"], d["BPD_STOP_BLOCKS_NEGATIVE"]) == ("6u", "5u")
    assert "BPD_WIRING" not in _defines(generate_rig_header(load_rig("gym-inverted-pendulum")))  # simulated only


def _rig(tmp_path, edit) -> str:
    raw = yaml.safe_load(load_rig("desktop-cartpole").path.read_text())
    edit(raw["wiring"])
    p = tmp_path / "rig.yaml"
    p.write_text(yaml.safe_dump(raw))
    return str(p)


def _set(path, value):
    def edit(w):
        node = w
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return edit


@pytest.mark.parametrize("edit, msg", [
    (_set(["board"], "arduino"), "wiring.board must be one of nucleo-f446"),
    (_set(["encoders", 0, "a"], "PA2"), "PA2 cannot carry this signal"),
    (_set(["motor", "dir"], "PA2"), "PA2 is taken by USART2 TX"),
    (_set(["motor", "dir"], "PA13"), "PA13 is taken by SWDIO"),
    (_set(["encoders", 1, "a"], "PC6"), "PC6 cannot carry this signal"),  # TIM3's pin on TIM4
    (_set(["encoders", 1, "timer"], "TIM3"), "TIM3 already counts another encoder"),
    (_set(["encoders", 0, "timer"], "TIM9"), "timer must be one of TIM2"),
    (_set(["motor", "pwm"], "PA9"), "PA9 cannot carry this signal"),  # channel 1 is PA8
    (_set(["motor", "dir"], "PA6"), "PA6 is already wiring.encoders[0].a"),
    (_set(["motor", "dir"], "PD2"), "on ports A, B, C, H"),
    (_set(["motor", "dir"], "PA16"), "must be a pin"),
    (_set(["motor", "dir"], 'PB5"; int x; /*'), "must be a pin"),  # nothing reaches C unchecked
    (_set(["encoders", 0, "name"], "cart */ #error"), "name must be 1 to 24 lower-case"),
    (_set(["end_stops", 1, "pin"], "PB0"), "shares interrupt line 0 with PC0"),
    (_set(["motor", "pwm_hz"], 50), "pwm_hz must be a whole number 1000..100000"),
    (_set(["motor", "full_scale"], float("inf")), "full_scale must be"),
    (_set(["motor", "invert"], "yes"), "invert must be true or false"),
    (_set(["motor", "channel"], 5), "channel must be 1..4"),
    (_set(["encoders", 0, "wires"], 4), "must be a mapping of name, timer, a, b, invert"),
    (lambda w: w["encoders"].pop(), "one encoder per position sensor (2)"),
    (_set(["end_stops", 0, "at"], 0), "its sign is its side"),
    (_set(["end_stops", 1, "at"], 0.3), "wiring.end_stops[1].at 0.3 is not inside the track (+-0.25 m)"),
    (_set(["encoders", 1, "at_power_on"], "pi"), "at_power_on must be the reading at power-on"),
    (lambda w: w["end_stops"][0].pop("at"), "a mapping of name, pin and at"),
])
def test_bad_wiring_refused_in_one_line(tmp_path, edit, msg):
    with pytest.raises(BpdError, match=re.escape(msg)):
        load_rig(_rig(tmp_path, edit))


def test_wiring_table_in_the_bring_up_guide_is_its_render(capsys):
    text = (ROOT / "hil" / "README.md").read_text()
    table = wiring_table(load_rig("desktop-cartpole"))
    assert table in text, "hil/README.md: run python -m firmware_host.rig.codegen desktop-cartpole --wiring"
    assert "| pendulum encoder A | PB6 | TIM4 channel 1, encoder mode |" in table
    assert codegen_main(["desktop-cartpole", "--wiring"]) == 0 and capsys.readouterr().out == table
    with pytest.raises(BpdError, match="has no wiring block"):
        wiring_table(load_rig("gym-inverted-pendulum"))


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_nucleo_image_builds_with_warnings_as_errors(tmp_path):
    from elftools.elf.elffile import ELFFile

    from firmware_host.measure.build import build_firmware_image
    from firmware_host.measure.elf import symbol_table

    img = build_firmware_image(pendulum_export(), "cortex-m4f", tmp_path / "b", rig="desktop-cartpole",
                               board="nucleo-f446")
    with open(img.elf, "rb") as f:
        e = ELFFile(f)
        syms = {s.name: s["st_value"] for s in symbol_table(e, img.elf).iter_symbols()}
        vectors = e.get_section_by_name(".isr_vector")
        assert vectors["sh_addr"] == 0x08000000  # flash of the F446
        table = vectors.data()
    for name in ("board_irq", "board_tick_due", "board_read_sensors", "board_write_actuator", "bpd_encoder_update",
                 "bpd_pwm_from_command", "bpd_fw_external_stop"):
        assert name in syms, name
    entry = int.from_bytes(table[4 * (16 + 55): 4 * (16 + 56)], "little")  # TIM7, the control tick
    assert entry & ~1 == syms["External_Handler"] & ~1
    # the motor output: the stops read and the duty written with interrupts held off (the end-stop interrupt's
    # zero is never overwritten by a duty read before it), and the zero's timer write completed (a barrier) before
    # the direction pin's: in that order in the linked code
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", "--disassemble=board_write_actuator", str(img.elf)],
                         capture_output=True, text=True, check=True).stdout
    ops = [" ".join(line.split("\t")[2:]).strip() for line in dis.splitlines() if line.count("\t") >= 2]
    at = {op: next(i for i, o in enumerate(ops) if o.split(" ")[0] == op) for op in ("cpsid", "bl", "dsb")}
    last_msr = max(i for i, o in enumerate(ops) if o.startswith("msr") and "PRIMASK" in o.upper())
    assert at["cpsid"] < at["bl"] < at["dsb"] < last_msr, ops  # bl: bpd_pwm_from_command, its stops under the mask
    with pytest.raises(BpdError, match="needs a wiring block for nucleo-f446"):
        build_firmware_image(pendulum_export(), "cortex-m4f", tmp_path / "c", rig="gym-inverted-pendulum",
                             board="nucleo-f446")


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_a_fault_stops_the_motor_at_once(tmp_path):
    """A hard fault (or NMI, a bus, memory or usage fault) masks every interrupt, the end stops' too, and the
    IWDG restarts the core only after about 50 ms: the image's handler, run in unicorn on a timer left at a
    running duty, puts the PWM pin (PA8, TIM1 CH1) back to an input with its pull-down and zeroes the duty."""
    unicorn = pytest.importorskip("unicorn")
    from elftools.elf.elffile import ELFFile
    from unicorn import arm_const

    from firmware_host.measure.build import build_firmware_image

    img = build_firmware_image(pendulum_export(), "cortex-m4f", tmp_path / "b", rig="desktop-cartpole",
                               board="nucleo-f446")
    moder, pupdr, ccr1 = 0x40020000, 0x4002000C, 0x40010034  # GPIOA, TIM1
    with open(img.elf, "rb") as f:
        e = ELFFile(f)
        segments = [(s["p_paddr"], s.data()) for s in e.iter_segments() if s["p_type"] == "PT_LOAD" and s["p_filesz"]]
        table = e.get_section_by_name(".isr_vector").data()
    for vector in (2, 3, 4, 5, 6):  # NMI, hard fault, memory management, bus and usage fault
        uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(arm_const.UC_CPU_ARM_CORTEX_M4)
        for base, size in ((0x08000000, 0x80000), (0x20000000, 0x20000), (0x40000000, 0x100000),
                           (0xE0000000, 0x100000)):
            uc.mem_map(base, size)
        for addr, data in segments:
            uc.mem_write(addr, data)
        uc.mem_write(moder, struct.pack("<I", 2 << 16))  # PA8 on its alternate function: the timer drives it
        uc.mem_write(pupdr, struct.pack("<I", 2 << 16))
        uc.mem_write(ccr1, struct.pack("<I", 1234))  # a duty running
        uc.reg_write(arm_const.UC_ARM_REG_SP, 0x20010000)
        handler = int.from_bytes(table[4 * vector: 4 * vector + 4], "little")
        uc.emu_start(handler | 1, 0xFFFFFFFF, count=5000)  # the handler ends in a loop: the count ends the run
        got = [struct.unpack("<I", bytes(uc.mem_read(a, 4)))[0] for a in (moder, pupdr, ccr1)]
        assert ((got[0] >> 16) & 3, (got[1] >> 16) & 3, got[2]) == (0, 2, 0), (vector, got)


def _board_build(tmp_path, board="nucleo-f446"):
    d = tmp_path / "build"
    d.mkdir()
    (d / "bpd_firmware.elf").write_bytes(b"\x7fELF")
    (d / "build_report.json").write_text(f'{{"board": "{board}"}}')
    return d


def test_flash_without_pyocd_is_one_line(tmp_path, monkeypatch, capsys):
    import builtins

    from bpd_app.cli import main

    real_import = builtins.__import__

    def no_pyocd(name, *a, **k):
        if name.startswith("pyocd"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pyocd)
    assert main(["firmware", "flash", str(_board_build(tmp_path))]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bpd: error: pyOCD is not installed: pip install -e '.[flash]' in the bpd checkout "
                   "(or pip install pyocd)"]


def test_flash_refuses_a_build_for_no_real_board(tmp_path):
    from firmware_host.measure.flash import FirmwareFlashConfig, firmware_flash

    with pytest.raises(BpdError, match="built for board stm32f4-pil, not a real board"):
        firmware_flash(FirmwareFlashConfig(build=str(_board_build(tmp_path, "stm32f4-pil"))))
    with pytest.raises(BpdError, match="no bpd_firmware.elf"):
        firmware_flash(FirmwareFlashConfig(build=str(tmp_path / "nowhere")))
    # the export directory the build went into by default: its one build is the QEMU board's
    with pytest.raises(BpdError, match=re.escape(f"{tmp_path}: no bpd_firmware.elf (give a `bpd firmware build "
                                                 "--board ...` directory; none in it is for a real board")):
        firmware_flash(FirmwareFlashConfig(build=str(tmp_path)))


def test_flash_of_an_export_directory_names_only_the_builds_it_would_take(tmp_path):
    """Given the export directory (where builds go by default), every build in it was named, those for the generic
    and the QEMU board too, which flash then refuses; now only a real board's, or that none is and how to make one."""
    from firmware_host.measure.flash import FirmwareFlashConfig, firmware_flash

    for name, board in (("pil", "stm32f4-pil"), ("generic", "generic")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "bpd_firmware.elf").write_bytes(b"\x7fELF")
        (tmp_path / name / "build_report.json").write_text(f'{{"board": "{board}"}}')
    with pytest.raises(BpdError, match=re.escape(f"{tmp_path}: no bpd_firmware.elf (give a `bpd firmware build --board "
                                                 "...` directory; none in it is for a real board: build with --board "
                                                 "nucleo-f446 or stm32f4 and --rig)") + "$"):
        firmware_flash(FirmwareFlashConfig(build=str(tmp_path)))
    _board_build(tmp_path)
    with pytest.raises(BpdError, match=re.escape(f"{tmp_path}: no bpd_firmware.elf (give a `bpd firmware build --board "
                                                 f"...` directory; the builds in it for a real board: "
                                                 f"{tmp_path / 'build'})") + "$"):
        firmware_flash(FirmwareFlashConfig(build=str(tmp_path)))


def test_flash_of_a_file_that_is_no_elf_is_one_line_before_pyocd(tmp_path, monkeypatch):
    """A bpd_firmware.elf that is not an ELF (a half-copied or overwritten file) went to pyOCD, which reads a file by
    its name's ending: its ELF reader's error is no pyOCD error, so bpd said 'internal error'. Now refused first."""
    from firmware_host.measure.flash import FirmwareFlashConfig, firmware_flash

    asked = _fake_pyocd(monkeypatch, lambda kw, exc: None, probes=("0670FF",))
    build = _board_build(tmp_path)
    (build / "bpd_firmware.elf").write_text("garbage\n")
    with pytest.raises(BpdError, match=re.escape(f"{build / 'bpd_firmware.elf'} is not a firmware image (no ELF "
                                                 "header): build it again with `bpd firmware build --board ...`")):
        firmware_flash(FirmwareFlashConfig(build=str(build)))
    assert asked == {}  # no probe searched, nothing programmed


def _fake_pyocd(monkeypatch, connect, probes=()) -> dict:
    """A stand-in for pyOCD with its API's shape (its exception classes, ConnectHelper, Session, FileProgrammer):
    `probes` (unique ids) are those attached, matched as pyOCD does (by a part of the id); connect(kw, exceptions)
    answers a Session's opening. ConnectHelper.session_with_chosen_probe prints what pyOCD's (0.36 to 0.46) prints
    when no probe matches. Returns what was asked: the probe search, the session's probe and options, the image."""
    import sys
    import types

    asked: dict = {}

    class Error(RuntimeError):
        pass

    class TargetSupportError(Error):
        pass

    class ProbeError(Error):
        pass

    class ConnectHelper:
        @staticmethod
        def get_all_connected_probes(blocking=True, unique_id=None, print_wait_message=True):
            asked["search"] = {"blocking": blocking, "unique_id": unique_id, "print_wait_message": print_wait_message}
            return [types.SimpleNamespace(unique_id=u) for u in probes if unique_id is None or unique_id.lower()
                    in u.lower()]

        @staticmethod
        def session_with_chosen_probe(blocking=True, unique_id=None, **kw):
            found = ConnectHelper.get_all_connected_probes(blocking, unique_id)
            if not found:
                print("\x1b[31mNo connected debug probe" + (f" matches unique ID '{unique_id}'" if unique_id else "s")
                      + "\x1b[0m")
                return None
            return Session(found[0], **kw)

    class Session:
        def __init__(self, probe, **kw):
            asked["session"] = {"probe": probe.unique_id, **kw}
            self.probe = probe
            self.target = types.SimpleNamespace(reset=lambda: asked.setdefault("reset", True))

        def __enter__(self):
            connect(asked["session"], exceptions)
            return self

        def __exit__(self, *exc):
            return False

    class FileProgrammer:
        def __init__(self, session):
            pass

        def program(self, path):
            asked["programmed"] = path

    exceptions = types.ModuleType("pyocd.core.exceptions")
    exceptions.Error, exceptions.TargetSupportError, exceptions.ProbeError = Error, TargetSupportError, ProbeError
    helpers = types.ModuleType("pyocd.core.helpers")
    helpers.ConnectHelper = ConnectHelper
    session = types.ModuleType("pyocd.core.session")
    session.Session = Session
    programmer = types.ModuleType("pyocd.flash.file_programmer")
    programmer.FileProgrammer = FileProgrammer
    for name, mod in (("pyocd", types.ModuleType("pyocd")), ("pyocd.core", types.ModuleType("pyocd.core")),
                      ("pyocd.core.exceptions", exceptions), ("pyocd.core.helpers", helpers),
                      ("pyocd.core.session", session), ("pyocd.flash", types.ModuleType("pyocd.flash")),
                      ("pyocd.flash.file_programmer", programmer)):
        monkeypatch.setitem(sys.modules, name, mod)
    return asked


@pytest.mark.parametrize("probe", [None, "0670FF"])
def test_flash_without_a_probe_is_one_line(tmp_path, monkeypatch, capsys, probe):
    """pyOCD present (a stand-in with its API's shape) but no probe attached: bpd's one line and nothing else, where
    pyOCD's session_with_chosen_probe had printed its own red line (ANSI colours in a log) above it."""
    from bpd_app.cli import main

    asked = _fake_pyocd(monkeypatch, lambda kw, exc: None, probes=("0671AA",) if probe else ())
    assert main(["firmware", "flash", str(_board_build(tmp_path)), *(["--probe", probe] if probe else [])]) == 1
    out, err = capsys.readouterr()
    which = f"probe {probe}" if probe else "debug probe"
    assert (out, err.strip().splitlines()) == ("", [f"bpd: error: no {which} found: plug in the board's ST-LINK "
                                                    "(USB) and check `pyocd list`"])
    assert asked == {"search": {"blocking": False, "unique_id": probe, "print_wait_message": False}}  # no session


def test_flash_with_two_probes_and_none_named_is_one_line(tmp_path, monkeypatch):
    """pyOCD would ask on the terminal which probe to use, and fail without one: the ids are named instead, and so
    are those a part of an id given matches."""
    from firmware_host.measure.flash import FirmwareFlashConfig, firmware_flash

    asked = _fake_pyocd(monkeypatch, lambda kw, exc: None, probes=("0670FF", "0671AA"))
    build = str(_board_build(tmp_path))
    with pytest.raises(BpdError, match=r"^2 debug probes attached \(0670FF, 0671AA\): name one with --probe$"):
        firmware_flash(FirmwareFlashConfig(build=build))
    with pytest.raises(BpdError, match=r"^2 debug probes match 067 \(0670FF, 0671AA\): name one with --probe$"):
        firmware_flash(FirmwareFlashConfig(build=build, probe="067"))
    assert "session" not in asked  # no session was opened


def test_flash_writes_the_image_to_the_one_probe_and_resets(tmp_path, monkeypatch):
    from firmware_host.measure.flash import FirmwareFlashConfig, firmware_flash

    asked = _fake_pyocd(monkeypatch, lambda kw, exc: None, probes=("0670FF", "0671AA"))
    build = _board_build(tmp_path)
    assert firmware_flash(FirmwareFlashConfig(build=str(build), probe="71A")) == \
        f"{build / 'bpd_firmware.elf'} -> stm32f446retx (nucleo-f446) through 0671AA"
    assert asked["session"] == {"probe": "0671AA", "target_override": "stm32f446retx"}
    assert asked["programmed"] == str(build / "bpd_firmware.elf") and asked["reset"]


def _raise(exc_name: str, text: str):
    def connect(kw, exceptions):
        raise getattr(exceptions, exc_name)(text)
    return connect


def test_flash_of_a_part_pyocd_has_no_pack_for_is_one_line_naming_the_pack(tmp_path, monkeypatch, capsys):
    """pyOCD's first answer on a fresh install: neither board's part is built in. Its words (pyOCD 0.36) were a
    traceback through bpd; now one line with the command that installs the part, and exit 1."""
    from bpd_app.cli import main

    _fake_pyocd(monkeypatch, _raise("TargetSupportError", "Target type stm32f446retx not recognized. Use 'pyocd "
                                    "list --targets' to see currently available target types."), probes=("0670FF",))
    assert main(["firmware", "flash", str(_board_build(tmp_path))]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "bpd: error: pyOCD has no support for stm32f446retx yet: install its pack once (`pyocd pack install "
        "stm32f446retx`), then flash again"]


def test_flash_failing_in_pyocd_is_one_line(tmp_path, monkeypatch, capsys):
    """A probe that does not connect (any pyOCD error, multi-line or not): one line, exit 1."""
    from bpd_app.cli import main

    _fake_pyocd(monkeypatch, _raise("ProbeError", "No ACK received\nsecond line"), probes=("0670FF",))
    build = _board_build(tmp_path, "stm32f4")
    assert main(["firmware", "flash", str(build)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"bpd: error: pyOCD could not flash {build / 'bpd_firmware.elf'} to stm32f405rgtx: No ACK received (is the "
        "board powered and its ST-LINK jumpers on?)"]


def test_pyocd_target_names_are_pack_part_numbers():
    """pyOCD names a pack's part by its part number in lower case (STM32F405RGTx: stm32f405rgtx); the stm32f4
    board's "stm32f405rg" matched no target, so --target was needed on every flash."""
    from firmware_host.measure.build import BOARD_PORTS
    from firmware_host.measure.flash import PYOCD_TARGETS

    assert PYOCD_TARGETS == {"nucleo-f446": "stm32f446retx", "stm32f4": "stm32f405rgtx"}
    assert set(PYOCD_TARGETS) <= set(BOARD_PORTS)


def test_a_board_build_for_a_rig_without_its_wiring_is_refused_before_any_note(tmp_path, capsys):
    """`bpd firmware build EXPORT --board nucleo-f446 --rig rotary-pendulum`: the note that the policy is of another
    plant said "the image is built" and the next line refused the build; the refusal now comes alone."""
    from bpd_app.cli import main

    rc = main(["firmware", "build", str(pendulum_export()), "--target", "cortex-m4f", "--board", "nucleo-f446",
               "--rig", "rotary-pendulum", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 1 and err == ("bpd: error: board nucleo-f446 drives a real rig: rig rotary-pendulum needs a wiring "
                               "block for nucleo-f446 (see firmware_host/rig/rigs/desktop-cartpole.yaml)\n")
    assert not (tmp_path / "b").exists()
