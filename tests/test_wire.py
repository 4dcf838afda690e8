"""The wire protocol: C and Python codecs against the same golden frames, a fault table fed both
codecs, and a long random-input run of the C parser under AddressSanitizer and UBSan."""

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_host import wire_spec
from hil.codec import Parser, cobs_decode, cobs_encode, crc16, encode

ROOT = Path(__file__).resolve().parents[1]
C = ROOT / "firmware_host" / "c"
GOLDEN = json.loads((Path(__file__).parent / "golden" / "frames.json").read_text())
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]


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
        assert [(f.name, f.seq) for f in got] == [(wire_spec.BY_ID[_body(x)[0]].name, _body(x)[1]) for x in frames], name
        assert p.bad_frames == bad, name
        # C
        out = subprocess.run([str(selftest), "stream", str(chunk)], input=stream, capture_output=True,
                             check=True).stdout.decode().splitlines()
        lines = [tuple(l.split(" ")) for l in out[:-1]]
        assert lines == [(str(i), str(s), h) for i, s, h in map(_body, frames)], name
        counters = list(map(int, out[-1].split()[1:]))
        assert counters[0] == len(frames) and sum(counters[1:]) == bad, (name, counters)


def test_halved_frames(selftest):
    a = bytes.fromhex(GOLDEN[7]["hex"])
    half = len(a) // 2
    p = Parser()
    assert p.feed(a[:half]) == [] and len(p.feed(a[half:])) == 1


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
