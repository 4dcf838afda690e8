"""docs/protocol.md against the one definition (firmware_host/wire/spec.py) and the C it generates, and what the
processor-in-the-loop and failed-trial paths say: `bpd hil run --port pil`'s timing line, `bpd hil report` on a
trial that ended early, `bpd rig pil --elf` given a file that is not an image."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from firmware_host.wire import spec

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "protocol.md").read_text()
FLAT = " ".join(DOC.split())  # the doc's prose with its line breaks as spaces, for sentences that wrap
HEADER = (ROOT / "firmware_host" / "c" / "core" / "bpd_msgs.h").read_text()


def doc_messages() -> dict[int, tuple[str, str, list[tuple[str, str, str | int]]]]:
    """The message table of docs/protocol.md: id -> (name, sender, [(field, type, count)])."""
    out = {}
    for line in DOC.splitlines():
        if not line.startswith("| 0x"):
            continue
        mid, name, sender, body = (c.strip() for c in line.strip().strip("|").split("|")[:4])
        fields: list[tuple[str, str, str | int]] = []
        for f in ([] if body == "-" else body.split(", ")):
            m = re.fullmatch(r"(\w+) (u8|u16|u32|f32)(?:\[(\w+)\])?", f)
            assert m, f"{name}: field {f!r} is not `name type` or `name type[count]`"
            count = m.group(3) or 1
            fields.append((m.group(1), m.group(2), int(count) if str(count).isdigit() else count))
        out[int(mid, 16)] = (name, sender, fields)
    return out


def test_the_message_table_is_the_spec():
    """Every message of the doc's table: id, name, sender, each field's name, type and count in order, as spec.py
    has them (and no message missing on either side)."""
    doc = doc_messages()
    assert set(doc) == {m.id for m in spec.MESSAGES}
    for m in spec.MESSAGES:
        name, sender, fields = doc[m.id]
        assert (name, sender) == (m.name.upper(), m.sender), m.name
        assert fields == [(f.name, f.type, f.count) for f in m.fields], m.name


def test_the_sizes_the_doc_states():
    """The frame limits the doc gives, where it says they are, and the largest payload bpd sends."""
    assert f"frame is at most **{spec.MAX_FRAME} bytes**" in FLAT
    assert f"a payload is at most {spec.MAX_PAYLOAD} bytes; COBS encodes it in at most {spec.MAX_ENCODED}" in FLAT
    assert f"holds at most {spec.MAX_ENCODED} bytes between delimiters" in FLAT
    state = spec.BY_NAME["state"]
    body = sum(spec.SIZES[f.type] * (f.max if f.count != 1 else 1) for f in state.fields)
    assert (spec.MAX_OBS, spec.MAX_ACT) == (16, 4)
    assert f"(a STATE with 16 observations and 4 actions) is a {1 + 2 + body + 2}-byte payload" in FLAT
    # the names of the constants, in the file the doc points to
    m = re.search(r"`MAX_PAYLOAD`, `MAX_ENCODED`, `MAX_FRAME` in `([^`]+)`", FLAT)
    assert m and (ROOT / m.group(1)).is_file(), m and m.group(1)
    for k in ("MAX_PAYLOAD", "MAX_ENCODED", "MAX_FRAME", "MAX_OBS", "MAX_ACT"):
        assert f"#define BPD_{k} {getattr(spec, k)}\n" in HEADER, k


def test_versions_flags_codes_and_caps_the_doc_states():
    """The protocol version in the title, each STATE flag bit, FAULT code, caps bit and CONFIG mode the doc names:
    the spec's numbers and the generated header's."""
    assert f"# bpd wire protocol (version {spec.PROTOCOL_VERSION})" in DOC
    assert f"#define BPD_PROTOCOL_VERSION {spec.PROTOCOL_VERSION}\n" in HEADER
    fw = (ROOT / "firmware_host" / "c" / "core" / "bpd_fw.h").read_text()
    major, minor = (int(re.search(rf"#define BPD_FW_{k} (\d+)", fw).group(1)) for k in ("MAJOR", "MINOR"))
    assert f"Version {spec.PROTOCOL_VERSION} (firmware " in FLAT  # the sentence naming the protocol's newest change
    # and the newest firmware the doc names is the header's (a firmware change within a protocol version has its own)
    assert max((int(a), int(b)) for a, b in re.findall(r"[Ff]irmware (\d+)\.(\d+)", FLAT)) == (major, minor)
    flags = DOC.split("STATE flags:")[1].split("\n\n")[0]
    named = {"running": "0 running", "clamped": "1 action clamped", "limit_stop": "2 position/angle limit stop",
             "watchdog": "3 watchdog", "overrun": "4 overrun", "device_policy": "5 device policy",
             "policy_error": "6 policy error", "stale_action": "7 stale action", "classical": "8 classical",
             "estop": "9 emergency stop"}
    assert set(named) == set(spec.FLAGS)
    for k, text in named.items():
        bit = int(text.split()[0])
        assert spec.FLAGS[k] == 1 << bit and f"#define BPD_FLAG_{k.upper()} {1 << bit}u" in HEADER, k
        assert re.search(rf"\b{re.escape(text)}\b", " ".join(flags.split())), k
    faults = " ".join(DOC.split("FAULT codes:")[1].split("\n\n")[0].split())
    assert f"{spec.FAULTS['watchdog']} (watchdog" in faults and f"{spec.FAULTS['selftest']} (self-test" in faults
    info = doc_messages()[spec.BY_NAME["info"].id]
    row = next(line for line in DOC.splitlines() if line.startswith("| 0x02"))
    for cap, what in (("device_policy", "on-device policy"), ("encoders", "encoders"), ("handover", "hand-over")):
        bit = spec.CAPS[cap].bit_length() - 1
        assert f"bit {bit}: {what}" in row, cap
    assert info[0] == "INFO"
    config = next(line for line in DOC.splitlines() if line.startswith("| 0x03"))
    for mode, what in (("host", "0: host computes actions"), ("device", "1: device runs its policy"),
                       ("handover", "2: hand-over")):
        assert f"{spec.MODES[mode]}:" == what.split()[0] and what in config, mode
    for k, v in spec.SELFTEST.items():
        assert f"#define BPD_SELFTEST_{k.upper()} {v}u" in HEADER
    assert "0 none (no policy, or an export without a stored pair), 1 passed, 2 failed" in row
    assert (spec.SELFTEST["none"], spec.SELFTEST["pass"], spec.SELFTEST["fail"]) == (0, 1, 2)
    assert (spec.ACK["ok"], spec.ACK["rejected"]) == (0, 1) and "status 0 ok, 1 rejected" in FLAT


def test_rule_references_name_the_rule_that_says_it():
    """A `rule N` the doc cites for a refusal of a CONFIG is the rule about that refusal: the hand-over mode a
    device without both controllers refuses is not rule 9's (finite limits)."""
    rules = dict(re.findall(r"^(\d+)\. \*\*([^*]+)\*\*", DOC, re.M))
    assert rules["9"] == "Limits must be finite."
    assert FLAT.count("refuses it (ACK rejected, rule 9)") == 0


def test_every_file_and_test_the_doc_names_exists():
    for path in set(re.findall(r"`((?:firmware_host|hil|tests|export)/(?:\w+/)*\w+\.(?:py|h|c|json|yaml))`", FLAT)):
        assert (ROOT / path).is_file(), path
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    for name in set(re.findall(r"`(test_\w+)`", DOC)):
        assert f"def {name}(" in tests, name


# ------------------------------------------------------------------ what the PIL and failed-trial paths say


def test_the_pil_trial_line_counts_instructions_not_time(monkeypatch, capsys):
    """Under QEMU (-icount shift=0) the image's clock is one virtual nanosecond per instruction, so infer_ns there is
    an instruction count, not the policy's time on a 168 MHz core (docs/protocol.md rule 16): the line says so."""
    import argparse

    import bpd.config
    import hil.trial
    from hil.cli import _run

    t = {"ticks": 100, "host_step_us": {"n": 0}, "infer_ns": {"n": 100, "median": 1053.0},
         "policy_cycles": {"n": 100, "median": 177.0}, "device_jitter_us": {"n": 100, "max": 1.0},
         "achieved_rate_hz": 25.0, "target_rate_hz": 25.0, "deadline_misses": 0, "deadline_miss_rate": 0.0}
    monkeypatch.setattr(bpd.config, "from_namespace", lambda cls, ns: ns)
    monkeypatch.setattr(hil.trial, "run_trial", lambda cfg: {"timing": t, "episodes": [],
                                                             "device": {"cycle_hz": 168_000_000}})
    _run(argparse.Namespace(port="pil", out="o"))
    line = capsys.readouterr().out
    assert "on-device inference median 1053 instructions (QEMU: not a board's time)" in line
    assert "1053 ns" not in line and "cycles" not in line
    assert "device tick jitter max 1 us of QEMU's virtual clock;" in line
    _run(argparse.Namespace(port="sim", out="o"))
    assert "device tick jitter max 1 us;" in capsys.readouterr().out


def _failed_trial(d: Path, ended: str, episodes: list[dict], ticks: dict[int, int], port: str = "sim") -> Path:
    """A trial's log directory as `bpd hil run` leaves it: ticks.csv (episode -> rows) and summary.json."""
    from hil.ticklog import TickLog

    d.mkdir()
    TickLog(d / "ticks.csv", 4, 1).close()
    header = (d / "ticks.csv").read_text().splitlines()  # the units line and the column names
    names = header[-1].split(",")
    rows = []
    for ep, n in ticks.items():
        for k in range(n):
            r = {c: "0" for c in names}
            r.update(episode=str(ep), step=str(k + 1), device_period_us="40000" if k else "", flags="1")
            rows.append(",".join(r[c] for c in names))
    (d / "ticks.csv").write_text("\n".join(header + rows) + "\n")
    (d / "summary.json").write_text(json.dumps({
        "config": {"port": port, "mode": "device"}, "rig": "gym-inverted-pendulum", "target_period_us": 40000,
        "episodes": episodes, "ended": ended}))
    return d


def test_report_refuses_a_tick_log_shorter_than_its_summary_counts(tmp_path):
    """A ticks.csv cut since its trial (30 ticks, the summary counting 40): the report refuses it in one line and
    leaves summary.json as it was, where it rewrote the timing from the cut log."""
    from bpd.errors import BpdError
    from hil.report import render

    d = _failed_trial(tmp_path / "log", "complete", [], {0: 30})
    summary = json.loads((d / "summary.json").read_text()) | {"timing": {"ticks": 40}}
    (d / "summary.json").write_text(json.dumps(summary))
    before = (d / "summary.json").read_bytes()
    with pytest.raises(BpdError, match=r"ticks\.csv: 30 ticks, where its summary\.json counts 40: the tick log was "
                                       r"cut or changed since the trial; nothing rewritten$"):
        render(d)
    assert (d / "summary.json").read_bytes() == before
    summary["timing"]["ticks"] = 30  # the count the trial wrote: rendered, the timing computed again
    (d / "summary.json").write_text(json.dumps(summary))
    render(d)
    assert json.loads((d / "summary.json").read_text())["timing"]["ticks"] == 30


def test_report_of_a_failed_trial_says_how_each_episode_ended(tmp_path, capsys):
    """`bpd hil report` on a trial cut by an error: the line names the trial's end and the episode cut short (it is
    in ticks.csv, not in the summary's episodes), and each trajectory's title says how its episode ended."""
    import argparse

    from hil.cli import _report
    from hil.report import episode_titles

    ended = "error: no state for 1.0 s: device stalled or unplugged"
    d = _failed_trial(tmp_path / "log", ended, [{"episode": 0, "return": 30.0, "length": 30, "ended": "max steps",
                                                 "deadline_misses": 0}], {0: 30, 1: 12})
    summary = json.loads((d / "summary.json").read_text())
    assert episode_titles(summary, {0: 30, 1: 12}) == {
        0: "episode 0: 30 ticks, max steps",
        1: f"episode 1: 12 ticks, cut short: the trial ended ({ended})"}
    _report(argparse.Namespace(log_dir=str(d), html=False))
    out = capsys.readouterr().out.splitlines()
    assert f"the trial ended early: {ended}; episode 1 cut short after 12 ticks" in out
    assert (d / "trajectory_ep1.png").is_file()
    # a trial of this version records the cut episode itself: the same titles and line
    from hil.report import ended_early

    summary["episodes"].append({"episode": 1, "return": 12.0, "length": 12, "deadline_misses": 0,
                                "ended": f"cut short: the trial ended ({ended})"})
    assert episode_titles(summary, {0: 30, 1: 12})[1] == f"episode 1: 12 ticks, cut short: the trial ended ({ended})"
    assert ended_early(summary, {0: 30, 1: 12}) == f"the trial ended early: {ended}; episode 1 cut short after 12 ticks"


def test_report_of_a_complete_trial_says_nothing_more(tmp_path, capsys):
    import argparse

    from hil.cli import _report

    eps = [{"episode": 0, "return": 5.0, "length": 5, "ended": "limit (device stopped)", "deadline_misses": 0}]
    d = _failed_trial(tmp_path / "log", "complete", eps, {0: 5})
    _report(argparse.Namespace(log_dir=str(d), html=False))
    out = capsys.readouterr().out
    assert "ended early" not in out and "trajectory_ep0.png" in out


def test_pil_elf_that_is_not_an_image_is_one_line(tmp_path):
    """`bpd rig pil --elf FILE` with a file that is not an ELF: said before QEMU starts, not as a closed channel."""
    from bpd.errors import BpdError
    from firmware_host.measure.pil import RigPilConfig, pil_image
    from firmware_host.rig import load_rig

    f = tmp_path / "notes.txt"
    f.write_text("not a firmware image\n")
    with pytest.raises(BpdError, match=r"notes\.txt is not a firmware image \(no ELF header\)"):
        pil_image(RigPilConfig(elf=str(f)), load_rig("gym-inverted-pendulum"))


def test_drop_and_corrupt_rates_that_sum_past_one_are_named(tmp_path):
    """Each rate is a probability on its own; together they share one draw per byte, so their sum is bounded: the
    line says so with the two values, before any rig is built."""
    from bpd.errors import BpdError
    from firmware_host.rig.sim import RigSimConfig, rig_sim

    cfg = RigSimConfig(drop_rate=0.6, corrupt_rate=0.6, build_dir=str(tmp_path / "b"))
    with pytest.raises(BpdError, match=r"--drop-rate plus --corrupt-rate must be at most 1 .*got 0\.6 \+ 0\.6\)"):
        rig_sim(cfg)
    assert not (tmp_path / "b").exists()


def test_pil_elf_of_a_bench_image_is_one_line_before_qemu(tmp_path):
    """A bench image (`bpd firmware build --image bench`: the policy and an entry point) passed the board check (its
    report names no board) and QEMU ran it until the plant port timed out ('the image did not start its plant port:
    timed out', 5 s): refused from its build report."""
    from bpd.errors import BpdError
    from firmware_host.measure.pil import RigPilConfig, pil_image
    from firmware_host.rig import load_rig

    (tmp_path / "bpd_bench.elf").write_bytes(b"\x7fELF" + bytes(60))
    (tmp_path / "build_report.json").write_text(json.dumps({"image": "bench", "target": "cortex-m4f"}))
    with pytest.raises(BpdError) as e:
        pil_image(RigPilConfig(elf=str(tmp_path / "bpd_bench.elf")), load_rig("desktop-cartpole"))
    assert str(e.value) == (f"{tmp_path / 'bpd_bench.elf'} is a bench image (the policy and an entry point, no "
                            "firmware): build the firmware with `bpd firmware build EXPORT --board stm32f4-pil --rig "
                            "desktop-cartpole`")
