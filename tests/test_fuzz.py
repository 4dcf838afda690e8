"""A short libFuzzer run (ASan + UBSan) of the parser and command harnesses from the committed seed
corpora: no finding, and the seeds reach past the framing into the messages and the state machine.
The long run is benchmarks/fuzz_benchmark.py."""

import shutil
import struct

import pytest

from firmware_host.measure.fuzz import FUZZ, HARNESSES, build, run
from firmware_host.measure.fuzz_corpus import write

pytestmark = pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed (make system-deps)")

# covered edges the seed corpora alone reach (a floor: fuzzing only adds)
FLOOR = {"parser": 80, "commands": 150}


@pytest.mark.parametrize("name", list(HARNESSES))
def test_short_fuzz_run(tmp_path, name):
    r = run(name, 20000, tmp_path)
    assert r.finding is None, r.finding
    assert r.executions == 20000 and r.coverage >= FLOOR[name]


def test_corpus_is_small_and_committed():
    files = [f for f in (FUZZ / "corpus").rglob("*") if f.is_file()]
    assert {f.parent.name for f in files} == set(HARNESSES)
    assert sum(f.stat().st_size for f in files) < 64 * 1024


def test_the_committed_seed_corpora_are_the_ones_generated_from_the_current_protocol(tmp_path):
    """Before, the parser seeds were the golden frames of protocol 2: protocols 3-5 lengthened INFO and STATE, so the
    current codec refused those five seeds' bodies as too short and the three newer golden frames were missing.
    Now the committed corpora equal fuzz_corpus's output from tests/golden/frames.json and the sessions."""
    write(tmp_path)
    made = {f.relative_to(tmp_path): f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()}
    committed = {f.relative_to(FUZZ / "corpus"): f.read_bytes() for f in (FUZZ / "corpus").rglob("*") if f.is_file()}
    assert sorted(committed) == sorted(made)
    assert [str(n) for n in sorted(made) if committed[n] != made[n]] == []


def test_the_parser_seeds_reach_the_state_round_trip(tmp_path):
    """A STATE the codec unpacks is packed again and must give its body back (then the harness's one check of pack
    against unpack; every message now, below). With the stale seeds no STATE unpacked, so bpd_pack_state (and every
    bpd_put_*) went unrun, and 300k executions of fuzzing did not find a way back in (coverage 100 edges against
    115)."""
    import subprocess

    exe = build("parser", tmp_path)
    p = subprocess.run([str(exe), "-runs=0", "-print_coverage=1", str(FUZZ / "corpus" / "parser")],
                       capture_output=True, text=True, cwd=tmp_path)
    covered = {ln.split()[-2] for ln in p.stderr.splitlines() if ln.startswith("COVERED_FUNC")}
    assert {"bpd_unpack_state", "bpd_pack_state", "bpd_put_u32", "bpd_put_f32"} <= covered


def _covered(exe, *inputs):
    """The functions a run of the harness over inputs (files or directories) reaches, without fuzzing."""
    import subprocess

    p = subprocess.run([str(exe), "-runs=0", "-print_coverage=1", *map(str, inputs)], capture_output=True, text=True,
                       cwd=exe.parent)
    assert p.returncode == 0, p.stderr[-2000:]
    return {ln.split()[-2] for ln in p.stderr.splitlines() if ln.startswith("COVERED_FUNC")}


def test_every_message_the_codec_defines_is_packed_again_from_the_seeds(tmp_path):
    """Before, only STATE went back through its pack function: INFO, CONFIG, ACK, ACTION, FAULT and the rest were
    unpacked and dropped, so their bpd_pack_* never ran under the fuzzer. Now every frame whose body unpacks is packed
    again (bpd_msg_repack, generated from the message table), and the committed seeds reach each message's pair.
    A CONFIG whose floats are a signalling NaN with a payload, a negative zero and all ones comes back bit for bit."""
    from firmware_host.wire import spec
    from firmware_host.wire.codec import cobs_encode, crc16

    raw = bytes([spec.BY_NAME["config"].id, 1, 0]) + struct.pack("<IHB", 20000, 3, 0)
    raw += struct.pack("<III", 0x7FA00001, 0x80000000, 0xFFFFFFFF)
    floats = tmp_path / "floats"
    floats.mkdir()
    (floats / "config").write_bytes(b"\x00\x00" + cobs_encode(raw + struct.pack("<H", crc16(raw))) + b"\x00")
    exe = build("parser", tmp_path)
    assert {f"bpd_{op}_{m.name}" for m in spec.MESSAGES for op in ("pack", "unpack")} - _covered(
        exe, FUZZ / "corpus" / "parser") == set()
    assert "bpd_pack_config" in _covered(exe, floats)  # and no abort: the bits came back


def test_the_round_trip_finds_a_pack_that_disagrees_with_its_unpack(tmp_path):
    """The harness built on a codec whose every u8 field is packed with its low bit flipped: each golden seed of a
    message with a u8 field is a finding (the harness aborts), the others (START, STOP, RESET) still pass. Before,
    only the STATE seeds were."""
    import subprocess

    from export.cc import compile_to, find_clang
    from firmware_host.measure.fuzz import CSRC, FLAGS
    from firmware_host.wire import spec

    core = tmp_path / "core"
    shutil.copytree(CSRC, core)
    bad = spec.generate_c_source().replace("bpd_put_u8(body + n, m->", "bpd_put_u8(body + n, 1 ^ m->")
    (core / "bpd_msgs.c").write_text(bad + "\n")
    exe = compile_to(tmp_path / "fuzz_bad", [*FLAGS, f"-I{core}", str(FUZZ / "fuzz_parser.c"),
                                              *(str(core / f) for f in HARNESSES["parser"])], "building", find_clang())
    has_u8 = {m.name for m in spec.MESSAGES if any(f.type == "u8" for f in m.fields)}
    found = {}
    for seed in sorted((FUZZ / "corpus" / "parser").glob("golden_*")):
        p = subprocess.run([str(exe), str(seed)], capture_output=True, text=True, cwd=tmp_path)
        found[seed.name] = p.returncode != 0
    assert found == {n: n.split("_", 2)[2] in has_u8 for n in found}
    assert has_u8 - {n.split("_", 2)[2] for n in found} == set()


def test_the_benchmark_records_its_command_without_a_machines_path(tmp_path, monkeypatch):
    """Before, fuzz_benchmark.py recorded its argv as typed: `--out /home/.../scratch` went into fuzz.json as that
    machine's absolute path, and fuzz.md named the default command whatever --runs was. Now both name the options
    that differ from the defaults, --out relative to the repository (the name alone outside it, as portable_path)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    out = tmp_path / "fz"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # holding neither the repository nor the out directory
    p = subprocess.run([sys.executable, str(root / "benchmarks" / "fuzz_benchmark.py"), "--runs", "200", "--out",
                        str(out)], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "fuzz.json").read_text())
    assert res["command"] == "python benchmarks/fuzz_benchmark.py --runs 200 --out fz"
    assert res["total_executions"] == 400 and str(tmp_path) not in (out / "fuzz.md").read_text()
    assert "`python benchmarks/fuzz_benchmark.py --runs 200 --out fz`" in (out / "fuzz.md").read_text()


@pytest.mark.parametrize("forgets", ["flags |= BPD_FLAG_ESTOP;", "flags |= BPD_FLAG_LIMIT_STOP;"])
def test_a_stop_whose_state_does_not_name_its_input_is_a_finding(tmp_path, forgets):
    """The command harness checked that a stop input ends the run, not which flag its STATE carries: a core that
    ended an e-stop's run as an end stop's (or the reverse) passed. Built on a core that forgets one of the two
    flags, the committed handover session (an end stop, then the e-stop, each mid-run) aborts; on the real core it
    runs clean."""
    import subprocess

    from export.cc import compile_to, find_clang
    from firmware_host.measure.fuzz import CSRC, FLAGS, RIG
    from firmware_host.rig import load_rig
    from firmware_host.rig.codegen import write_rig_header

    core = tmp_path / "core"
    shutil.copytree(CSRC, core)
    src = (core / "bpd_fw.c").read_text()
    assert src.count(forgets) == 1
    (core / "bpd_fw.c").write_text(src.replace(forgets, ""))
    rig = write_rig_header(load_rig(RIG), tmp_path / "rig").parent
    seed = FUZZ / "corpus" / "commands" / "handover_session"
    for name, c in (("bad", core), ("good", CSRC)):
        exe = compile_to(tmp_path / f"fuzz_{name}", [*FLAGS, f"-I{c}", f"-I{rig}", str(FUZZ / "fuzz_commands.c"),
                                                     *(str(c / f) for f in HARNESSES["commands"])], "building",
                         find_clang())
        p = subprocess.run([str(exe), str(seed)], capture_output=True, text=True, cwd=tmp_path)
        assert (p.returncode != 0) == (name == "bad"), (name, p.stderr[-400:])
