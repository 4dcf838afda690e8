"""Processor-in-the-loop: the Cortex-M firmware image (STM32F405 board layer, policy linked in) in
qemu-system-arm closes the loop with the MuJoCo plant. One episode in device mode and one in host
mode on gym-inverted-pendulum through `bpd hil run`, returns against the host-built simulated rig,
and the image's own instruction counts per tick against unicorn's count of the same policy."""

import csv
import json
import os
import shutil

import numpy as np
import pytest

from tests.conftest import pendulum_export, run_bpd

FIX = pendulum_export()
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                                reason="qemu-system-arm or arm-none-eabi-gcc not installed (make system-deps)")


def _trial(tmp_path, port: str, mode: str) -> tuple[dict, list[dict]]:
    out = tmp_path / f"{port}-{mode}"
    extra = ["--stall-timeout", "10"] + (["--lockstep"] if port == "sim" else [])  # lockstep: not real time
    run_bpd("hil", "run", "--port", port, "--rig", "gym-inverted-pendulum", "--policy", str(FIX), "--mode", mode,
            "--episodes", "1", "--seed", "3", "--out", str(out), "--no-plots", *extra, timeout=600)
    summary = json.loads((out / "summary.json").read_text())
    rows = []
    if (out / "ticks_pil.csv").exists():
        with open(out / "ticks_pil.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    return summary, rows


@needs_qemu
@pytest.mark.parametrize("mode", ["device", "host"])
def test_pil_episode_matches_simulated_rig(tmp_path, mode):
    pil, ticks = _trial(tmp_path, "pil", mode)
    (ep,) = pil["episodes"]
    assert pil["ended"] == "complete" and ep["length"] == 1000 and ep["return"] == 1000.0
    if mode == "device":  # the host-built device on the same seed scores the same (both modes, 10 episodes
        sim, _ = _trial(tmp_path, "sim", mode)  # each, in benchmarks/pil_benchmark.py)
        assert sim["episodes"][0]["return"] == ep["return"]
        # the log's units line: the image under QEMU counts instructions where the host build counts nanoseconds
        units = {d: dict(u.split("=", 1) for u in (tmp_path / f"{d}-device" / "ticks.csv").open().readline()
                         .removeprefix("# units: ").strip().split(", ")) for d in ("pil", "sim")}
        assert (units["sim"]["infer_ns"], units["sim"]["device_jitter_us"]) == ("ns", "us")
        assert (units["pil"]["infer_ns"], units["pil"]["device_jitter_us"]) == ("instructions (QEMU)",
                                                                               "us (QEMU virtual time)")
        assert units["pil"]["policy_cycles"] == "virtual cycles (QEMU: cycle_hz x instructions / 1e9)"
    assert len(ticks) >= 1000 and all(int(r["tick_instructions"]) > 0 for r in ticks)
    policy = np.array([int(r["policy_instructions"]) for r in ticks])
    if mode == "host":
        assert (policy == 0).all()
    else:
        assert (policy > 0).all()
        # the STATE's infer_ns counts the same call (one instruction per virtual nanosecond) plus the
        # policy wrapper's own cycle-counter reads
        assert 0 < pil["timing"]["infer_ns"]["median"] - np.median(policy) < 100
        _against_unicorn(tmp_path, policy[:50])


def _against_unicorn(tmp_path, pil: np.ndarray) -> None:
    """The image's SysTick count of the policy call under -icount against unicorn's exact count of
    the same export on the same observations (within SysTick's resolution and the call's wrapper)."""
    from firmware_host.measure.build import build_bpd_image
    from firmware_host.measure.emulate import Emulator

    with open(tmp_path / "pil-device" / "ticks.csv", newline="") as f:
        rows = list(csv.DictReader(l for l in f if not l.startswith("#")))
    emu = Emulator(build_bpd_image(FIX, "cortex-m4f", tmp_path / "bench").elf, "cortex-m4f")
    exact = [emu.call(np.array([float(r[f"obs{i}"]) for i in range(4)], np.float32), 1).instructions
             for r in rows[:len(pil)]]
    assert np.median(pil) == pytest.approx(np.median(exact), rel=0.05)


@pytest.mark.skipif(not os.environ.get("BPD_HIL_PORT"), reason="no board: set BPD_HIL_PORT, BPD_HIL_RIG and "
                    "BPD_HIL_POLICY to run episodes on real hardware (hil/README.md)")
@pytest.mark.parametrize("mode", ["device", "host"])
def test_board_episode(tmp_path, mode):
    """The same trial on a real board: BPD_HIL_POLICY is the export whose firmware is flashed."""
    rig = os.environ.get("BPD_HIL_RIG", "desktop-cartpole")
    policy = os.environ.get("BPD_HIL_POLICY", str(FIX))
    out = tmp_path / mode
    run_bpd("hil", "run", "--port", os.environ["BPD_HIL_PORT"], "--rig", rig, "--policy", policy, "--mode", mode,
            "--episodes", "1", "--out", str(out), "--no-plots", timeout=600)
    s = json.loads((out / "summary.json").read_text())
    assert s["ended"] == "complete" and s["bad_frames"]["host_parser"] == 0
    assert s["episodes"][0]["length"] > 0


def test_pil_image_for_another_board_refused(tmp_path):
    (tmp_path / "bpd_firmware.elf").write_bytes(b"\x7fELF")
    (tmp_path / "build_report.json").write_text(json.dumps({"board": "generic", "rig": "gym-inverted-pendulum"}))
    p = run_bpd("rig", "pil", "--elf", str(tmp_path / "bpd_firmware.elf"), check=False)
    assert p.returncode != 0 and p.stderr.startswith("bpd: error: ") and len(p.stderr.splitlines()) == 1
    assert "--board stm32f4-pil" in p.stderr


def test_a_missing_qemu_is_said_before_the_build_and_leaves_no_socket_directory(tmp_path, monkeypatch):
    """PATH without qemu-system-arm: the image was built first (seconds of compiling for nothing) and the plant
    socket's directory (bpd-pil-XXXX in the temporary directory) was left behind on every try; now the one line comes
    before any build, and a QEMU that is there but cannot run leaves nothing behind either."""
    import tempfile

    import firmware_host.measure.build as build
    from bpd.errors import BpdError
    from firmware_host.measure.pil import PilRig, RigPilConfig

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(build, "firmware_build", lambda cfg: pytest.fail("built with no QEMU to run the image"))
    with pytest.raises(BpdError, match=r"^qemu-system-arm not found: install qemu-system-arm"):
        PilRig(RigPilConfig(policy=str(FIX)))
    qemu = tmp_path / "bin" / "qemu-system-arm"  # there, executable, but no program: exec fails
    qemu.write_bytes(b"\x00\x01not a program")
    qemu.chmod(0o755)
    elf = tmp_path / "b" / "bpd_firmware.elf"
    elf.parent.mkdir()
    elf.write_bytes(b"\x7fELF" + bytes(60))
    with pytest.raises(BpdError, match=rf"^QEMU did not start: {qemu}: "):
        PilRig(RigPilConfig(elf=str(elf)))
    assert list((tmp_path / "tmp").iterdir()) == []


@needs_qemu
def test_an_image_without_its_build_report_that_never_answers_says_which_image_talks_to_the_plant(tmp_path):
    """An ELF copied away from its build report (so neither board nor image kind can be checked) that is not the
    stm32f4-pil firmware: QEMU runs it and the plant port never answers; 'did not start its plant port: timed out'
    said nothing of why, now the line names the image that has the plant port."""
    from bpd.errors import BpdError
    from firmware_host.measure.build import FirmwareBuildConfig, firmware_build
    from firmware_host.measure.pil import PilRig, RigPilConfig

    rep = firmware_build(FirmwareBuildConfig(export=str(FIX), image="bench", out=str(tmp_path / "b")))
    (tmp_path / "b" / "build_report.json").unlink()
    with pytest.raises(BpdError) as e:
        PilRig(RigPilConfig(elf=rep["elf"]))
    # the bench image ends on its own: whether QEMU closes the channel or the wait runs out first is the host's timing
    why, _, board = str(e.value).removeprefix("the image did not start its plant port: ").partition(" (")
    assert why in ("no answer in 5 s", "the image closed the plant channel"), str(e.value)
    assert board == ("no build_report.json beside bpd_bench.elf says which board it is for: the plant port is the "
                     "`bpd firmware build --board stm32f4-pil` image's)")


@pytest.mark.parametrize("flag, value, said", [
    ("--seed", "-1", "--seed must be at least 0 (got -1)"),
    ("--duration", "-5", "--duration must be at least 0 (got -5)"),
    ("--restart-at", "-2", "--restart-at must be at least 0 (got -2)")])
def test_rig_pil_refuses_out_of_range_numbers_before_building(tmp_path, monkeypatch, capsys, flag, value, said):
    """Only --action-timeout was checked: --seed -1 was an internal error (numpy's 'expected non-negative integer'),
    --duration -5 stopped the rig at once as if done, --restart-at -2 restarted the image on its first tick. Now the
    ranges of `bpd rig sim`, one line each, before anything is built."""
    import firmware_host.measure.build as build
    from bpd_app.cli import main

    monkeypatch.setattr(build, "firmware_build", lambda cfg: pytest.fail("built"))
    assert main(["rig", "pil", "--policy", str(FIX), flag, value]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"bpd: error: {said}"]
