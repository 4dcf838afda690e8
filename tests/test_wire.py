"""The wire protocol: the golden frames against bytes built by hand from docs/protocol.md, C and Python
codecs against those golden frames, a fault table fed both codecs, and a long random-input run of
the C parser under AddressSanitizer and UBSan."""

import binascii
import json
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from export.cc import STRICT
from firmware_host.wire import spec as wire_spec
from firmware_host.wire.codec import Parser, cobs_decode, cobs_encode, crc16, encode

ROOT = Path(__file__).resolve().parents[1]
C = ROOT / "firmware_host" / "c" / "core"
GOLDEN = json.loads((Path(__file__).parent / "golden" / "frames.json").read_text())


def build_selftest(tmp: Path, cc: str = "gcc", extra: list[str] | None = None) -> Path:
    exe = tmp / f"wire_selftest_{cc}"
    srcs = [C / f for f in ("bpd_wire.c", "bpd_msgs.c", "bpd_msgs_dump.c", "wire_selftest.c")]
    subprocess.run([cc, *STRICT, "-O1", "-g", *(extra or []), f"-I{C}", *map(str, srcs), "-o", str(exe)], check=True)
    return exe


@pytest.fixture(scope="module")
def selftest(tmp_path_factory):
    return build_selftest(tmp_path_factory.mktemp("wire"))


def test_crc_and_cobs_known_answers():
    assert crc16(b"123456789") == 0x29B1
    assert cobs_encode(b"\x00") == b"\x01\x01"
    assert cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert cobs_encode(bytes(range(1, 255))) == b"\xff" + bytes(range(1, 255)) + b"\x01"
    for data in (b"", b"\x00\x00", bytes(range(256)) * 2, b"\x01" * 600):
        assert cobs_decode(cobs_encode(data)) == data


def test_hello_frame_by_hand():
    # raw payload: id 0x01, seq 0x0001 (LE), body 0x01, then CRC-16/CCITT-FALSE of those 4 bytes (LE)
    raw = bytes([0x01, 0x01, 0x00, 0x01])
    c = crc16(raw)
    assert encode("hello", 1, protocol=1) == b"\x00" + cobs_encode(raw + bytes([c & 0xFF, c >> 8])) + b"\x00"


# ----------------------------------------------------------------- golden frames from first principles
# Built without firmware_host.wire.codec or wire_spec: CRC and COBS written from their definitions, payloads packed
# with struct from the message table of docs/protocol.md.


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE bit by bit: polynomial 0x1021, initial 0xFFFF, MSB first, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def cobs_reference(data: bytes) -> bytes:
    """COBS (Cheshire and Baker 1999) for blocks shorter than 254 bytes: the data with a zero appended is
    cut after each zero; each piece becomes one code byte (its length: the non-zero bytes + 1) followed by
    its non-zero bytes, the zero itself left implicit. (Every payload here is far below 254 bytes, so the
    0xFF block without an implied zero never arises.)"""
    out = bytearray()
    for piece in data.split(b"\x00"):  # the pieces between zeros; the last one ends at the appended zero
        assert len(piece) < 254
        out += bytes([len(piece) + 1]) + piece
    return bytes(out)


# body layouts, little-endian, transcribed from the message table of docs/protocol.md
MESSAGE_IDS = {"hello": 0x01, "info": 0x02, "config": 0x03, "start": 0x04, "stop": 0x05, "reset": 0x06,
               "ack": 0x07, "state": 0x10, "action": 0x11, "fault": 0x12}


def body_by_hand(name: str, f: dict) -> bytes:
    if name == "hello":
        return struct.pack("<B", f["protocol"])
    if name == "info":
        return struct.pack("<6BI8BH2IBI", f["protocol"], f["fw_major"], f["fw_minor"], f["obs_dim"], f["act_dim"],
                           f["caps"], f["period_us"], *f["model_hash"], f["boot"], f["rx_dropped"],
                           f["actions_dropped"], f["selftest"], f["cycle_hz"])
    if name == "config":
        return struct.pack("<IHB3f", f["period_us"], f["watchdog_ticks"], f["mode"], f["action_limit"],
                           f["pos_limit"], f["angle_limit"])
    if name in ("start", "stop"):
        return b""
    if name == "reset":
        return struct.pack("<I", f["seed"])
    if name == "ack":
        return struct.pack("<BBH", f["of"], f["status"], f["echo_seq"])
    if name == "state":
        return struct.pack(f"<3IH3I2B{f['n_obs']}f{f['n_act']}f", f["t_us"], f["infer_ns"], f["rtt_us"], f["flags"],
                           f["policy_cycles"], f["jitter_us"], f["jitter_max_us"], f["n_obs"], f["n_act"], *f["obs"],
                           *f["action"])
    if name == "action":
        return struct.pack(f"<HB{f['n_act']}f", f["echo_seq"], f["n_act"], *f["action"])
    if name == "fault":
        return struct.pack("<BI", f["code"], f["detail"])
    raise AssertionError(f"no layout for {name}")


def frame_by_hand(name: str, seq: int, fields: dict) -> bytes:
    raw = struct.pack("<BH", MESSAGE_IDS[name], seq) + body_by_hand(name, fields)
    return b"\x00" + cobs_reference(raw + struct.pack("<H", crc16_ccitt_false(raw))) + b"\x00"


def test_reference_crc_and_cobs_known_answers():
    # the catalogued check value of CRC-16/CCITT-FALSE, and the standard library's CRC-CCITT with that init
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    rng = random.Random(7)
    for n in (0, 1, 5, 64, 101):
        data = rng.randbytes(n)
        assert crc16_ccitt_false(data) == binascii.crc_hqx(data, 0xFFFF)
    # worked examples of COBS encoding (Cheshire and Baker's scheme, frame delimiters left off)
    for data, enc in [("00", "0101"), ("0000", "010101"), ("001100", "01021101"), ("11220033", "0311220233"),
                      ("11223344", "0511223344"), ("11000000", "0211010101")]:
        assert cobs_reference(bytes.fromhex(data)).hex() == enc, data


@pytest.mark.parametrize("i", range(len(GOLDEN)), ids=[f"{g['name']}-{g['seq']}" for g in GOLDEN])
def test_golden_frame_built_by_hand(i):
    """Every golden frame, byte for byte, from its fields without the project's encoder."""
    g = GOLDEN[i]
    assert frame_by_hand(g["name"], g["seq"], g["fields"]).hex() == g["hex"]


def test_golden_frames_cover_the_protocol():
    assert {g["name"] for g in GOLDEN} == set(MESSAGE_IDS)
    # the largest frame bpd sends: a STATE with 16 observations and 4 actions, a 113-byte payload
    big = next(g for g in GOLDEN if g["name"] == "state" and g["fields"]["n_obs"] == 16)
    # body: t_us, infer_ns, rtt_us (3 x 4), flags (2), policy_cycles, jitter_us, jitter_max_us (3 x 4), n_obs,
    # n_act (2), 20 floats (80) = 108 bytes; with the 3-byte header and the 2-byte CRC, the 113-byte payload
    # docs/protocol.md states
    assert len(body_by_hand("state", big["fields"])) == 108
    # on the wire: COBS adds one byte to a payload under 254 bytes, and the two delimiters
    assert len(bytes.fromhex(big["hex"])) == 113 + 1 + 2


def test_generated_c_is_up_to_date():
    assert (C / "bpd_msgs.h").read_text() == wire_spec.generate_c_header()
    assert (C / "bpd_msgs.c").read_text() == wire_spec.generate_c_source() + "\n"
    assert (C / "bpd_msgs_dump.c").read_text() == wire_spec.generate_c_dump()


def test_python_codec_golden():
    p = Parser()
    for g in GOLDEN:
        assert encode(g["name"], g["seq"], **g["fields"]).hex() == g["hex"]
        (f,) = p.feed(bytes.fromhex(g["hex"]))
        assert (f.name, f.seq) == (g["name"], g["seq"])
        for k, v in g["fields"].items():
            assert f.fields[k] == pytest.approx(v, rel=1e-7), k


def _fmt(v, f32: bool) -> str:
    """As the C dump prints it: floats rounded to float32, then %.9g."""
    return f"{float(np.float32(v)):.9g}" if f32 else str(int(v))


def test_c_codec_golden(selftest):
    out = subprocess.run([str(selftest), "frames"], input="\n".join(g["hex"] for g in GOLDEN) + "\n",
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == 2 * len(GOLDEN)
    msgs = {m.name: m for m in wire_spec.MESSAGES}
    for g, dump, hexline in zip(GOLDEN, out[0::2], out[1::2]):
        assert hexline == g["hex"], g["name"]  # decode + re-encode is byte for byte
        expected = [g["name"], str(g["seq"])]
        for f in msgs[g["name"]].fields:
            v = g["fields"][f.name]
            f32 = f.type == "f32"
            val = ",".join(_fmt(x, f32) for x in v) if isinstance(v, list) else _fmt(v, f32)
            expected.append(f"{f.name}={val}")
        assert dump.split(" ") == expected


def fault_table():
    """(name, stream, frames expected in order, expected bad-frame count)."""
    a = bytes.fromhex(GOLDEN[7]["hex"])  # a state frame
    b = bytes.fromhex(GOLDEN[10]["hex"])  # an action frame
    bad_crc = bytearray(a)
    bad_crc[5] ^= 0x01 if bad_crc[5] not in (0x01,) else 0x02
    return [
        ("whole", a, [a], 0),
        ("two per read", a + b, [a, b], 0),
        ("garbage before", b"\x13\x37\x42" + a, [a], 1),
        ("garbage after", a + b"\x13\x37", [a], 0),  # unterminated tail: not a frame yet
        ("garbage inside", a[:6] + b"\x55\x66" + a[6:] + b, [b], 1),
        ("garbage without delimiter before", b"\x13\x37\x42" + a[1:], [], 1),
        ("bad crc", bytes(bad_crc) + b, [b], 1),
        ("idle delimiters", b"\x00\x00" + a + b"\x00" + b, [a, b], 0),
        ("truncated then good", a[:-4] + b"\x00" + b, [b], 1),
        ("overlong garbage", b"\x01" * 700 + b"\x00" + a, [a], 1),
    ]


def _body(frame: bytes) -> tuple[int, int, str]:
    raw = cobs_decode(frame[1:-1])
    return raw[0], raw[1] | raw[2] << 8, raw[3:-2].hex()


@pytest.mark.parametrize("chunk", [0, 1, 2, 7])
def test_fault_table_both_codecs(selftest, chunk):
    """Fed whole (0), byte by byte (1) and in other splits: both codecs find the same frames."""
    for name, stream, frames, bad in fault_table():
        # Python
        p = Parser()
        got = []
        step = chunk or len(stream)
        for i in range(0, len(stream), step):
            got += p.feed(stream[i:i + step])
        want = [(wire_spec.BY_ID[_body(x)[0]].name, _body(x)[1]) for x in frames]
        assert [(f.name, f.seq) for f in got] == want, name
        assert p.bad_frames == bad, name
        # C
        out = subprocess.run([str(selftest), "stream", str(chunk)], input=stream, capture_output=True,
                             check=True).stdout.decode().splitlines()
        lines = [tuple(l.split(" ")) for l in out[:-1]]
        assert lines == [(str(i), str(s), h) for i, s, h in map(_body, frames)], name
        counters = list(map(int, out[-1].split()[1:]))
        assert counters[0] == len(frames) and sum(counters[1:]) == bad, (name, counters)


def test_halved_frames(selftest):
    """Every golden frame split in two reads: nothing from the first half, the whole frame from the second
    (Python), and the same single frame with no bad-frame count from the C parser fed the same two pieces."""
    for g in GOLDEN:
        a = bytes.fromhex(g["hex"])
        half = (len(a) + 1) // 2
        p = Parser()
        assert p.feed(a[:half]) == [], g["name"]
        (f,) = p.feed(a[half:])
        assert (f.name, f.seq, p.bad_frames) == (g["name"], g["seq"], 0)
        out = subprocess.run([str(selftest), "stream", str(half)], input=a, capture_output=True,
                             check=True).stdout.decode().splitlines()
        body = body_by_hand(g["name"], g["fields"]).hex()
        assert out == [f"{MESSAGE_IDS[g['name']]} {g['seq']} {body}", "counters 1 0 0 0 0"], g["name"]


@pytest.mark.skipif(shutil.which("clang") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_c_parser_random_input_under_sanitizers(tmp_path):
    """Several MB of random bytes, mutated frames and valid frames: no sanitizer finding, and every
    valid frame placed after a delimiter is still found."""
    try:
        exe = build_selftest(tmp_path, "gcc", ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
    except subprocess.CalledProcessError:
        pytest.skip("sanitizer runtime not available")
    rng = random.Random(1234)
    golden = [bytes.fromhex(g["hex"]) for g in GOLDEN]
    parts, valid = [], 0
    for _ in range(40000):
        r = rng.random()
        if r < 0.4:
            parts.append(rng.randbytes(rng.randint(1, 300)))
        elif r < 0.7:
            f = bytearray(rng.choice(golden))
            for _ in range(rng.randint(1, 4)):
                f[rng.randrange(len(f))] = rng.getrandbits(8)
            parts.append(bytes(f))
        else:
            parts.append(b"\x00" + rng.choice(golden))
            valid += 1
    stream = b"".join(parts)
    env = dict(os.environ, ASAN_OPTIONS="abort_on_error=1", UBSAN_OPTIONS="halt_on_error=1")
    for chunk in ("0", "3", "64"):
        p = subprocess.run([str(exe), "stream", chunk], input=stream, capture_output=True, env=env)
        assert p.returncode == 0, p.stderr.decode()[-2000:]
        assert b"runtime error" not in p.stderr and b"AddressSanitizer" not in p.stderr
        ok = int(p.stdout.decode().splitlines()[-1].split()[1])
        assert ok >= valid  # mutated frames may still be valid; every intact one is found
    assert len(stream) > 2_000_000


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_wire_compiles_warning_free(tmp_path, cc):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")
    build_selftest(tmp_path, cc)
