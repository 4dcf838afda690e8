"""Regenerate the seed corpora: the golden frames for the parser, and short host sessions (every
command, ticks with ordinary and non-finite readings, actions, a watchdog fault and its reset; hand-over mode
and an end stop then the emergency stop tripping mid-run) for the command harness (in firmware_host/c/fuzz/corpus/).

    python -m firmware_host.measure.fuzz_corpus"""

import json
import struct
from pathlib import Path

from firmware_host.wire.codec import encode

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "firmware_host" / "c" / "fuzz" / "corpus"


def _bytes(frame: bytes) -> bytes:
    return bytes([0, len(frame)]) + frame  # op 0: n bytes from the host


def _tick(*raw: float, late: int = 0) -> bytes:
    return bytes([1 | (late << 2)]) + struct.pack(f"<{len(raw)}f", *raw)


def sessions() -> dict[str, bytes]:
    cfg = dict(period_us=0, watchdog_ticks=3, action_limit=3.0, pos_limit=1.0, angle_limit=0.2)
    host = (_bytes(encode("hello", 0, protocol=1)) + _bytes(encode("config", 1, mode=0, **cfg))
            + _bytes(encode("start", 2)) + _tick(0.0, 0.01, 0.0, 0.0)
            + _bytes(encode("action", 3, echo_seq=3, n_act=1, action=[5.0]))
            + _tick(0.01, 0.02, 0.1, 0.1) + _bytes(encode("action", 4, echo_seq=1, n_act=1, action=[1.0]))
            + _tick(0.0, 0.0, 0.0, 0.0) + _tick(0.0, 0.0, 0.0, 0.0) + _tick(0.0, 0.0, 0.0, 0.0)
            + _tick(0.0, 0.0, 0.0, 0.0) + _bytes(encode("stop", 5)) + _bytes(encode("start", 6))
            + _bytes(encode("reset", 7, seed=9)) + _bytes(encode("start", 8)))
    device = (b"\x01" + _bytes(encode("config", 1, mode=1, **cfg)) + _bytes(encode("start", 2))
              + _tick(0.0, 0.01, 0.0, 0.0) + bytes([2 | 0x80]) + _tick(float("nan"), 0.0, 0.0, 0.0)
              + bytes([2]) + _tick(0.0, float("inf"), 0.0, 0.0, late=20) + _tick(0.0, 0.5, 0.0, 0.0)
              + _bytes(encode("config", 3, mode=1, **(cfg | {"period_us": 7}))))
    # hand-over (both controllers linked: first byte bit 1): inside the region, outside, the learned policy failing,
    # then an end stop tripping mid-run (op 2 with bit 6) and the tick that ends the run; a new run, and the emergency
    # stop (bit 5 too) ending it
    handover = (b"\x03" + _bytes(encode("config", 1, mode=2, **(cfg | {"angle_limit": 3.0})))
                + _bytes(encode("start", 2)) + _tick(0.0, 0.1, 0.0, 0.0) + _tick(0.0, 2.0, 0.0, 0.0)
                + bytes([2 | 0x80]) + _tick(0.0, 0.1, 0.0, 0.0) + bytes([2]) + bytes([2 | 0x40])
                + _bytes(encode("action", 3, echo_seq=3, n_act=1, action=[1.0])) + _tick(0.0, 0.1, 0.0, 0.0)
                + _bytes(encode("start", 4)) + _tick(0.0, 0.1, 0.0, 0.0) + bytes([2 | 0x60])
                + _tick(0.0, 0.1, 0.0, 0.0))
    return {"host_session": b"\x00" + host, "device_session": device, "handover_session": handover}


def write(corpus: Path = CORPUS) -> None:
    """Write both seed corpora under corpus: one parser seed per golden frame (its first byte picks the chunk size)
    and all of them in one stream, old golden seeds removed first (the frames renumber when the golden set grows);
    the command sessions."""
    golden = json.loads((ROOT / "tests" / "golden" / "frames.json").read_text())
    parser = corpus / "parser"
    parser.mkdir(parents=True, exist_ok=True)
    for old in parser.glob("golden_*"):
        old.unlink()
    for i, g in enumerate(golden):
        (parser / f"golden_{i:02d}_{g['name']}").write_bytes(bytes([i]) + bytes.fromhex(g["hex"]))
    (parser / "all_golden").write_bytes(b"\x00" + b"".join(bytes.fromhex(g["hex"]) for g in golden))
    commands = corpus / "commands"
    commands.mkdir(parents=True, exist_ok=True)
    for name, data in sessions().items():
        (commands / name).write_bytes(data)


def main() -> None:
    write()


if __name__ == "__main__":
    main()
