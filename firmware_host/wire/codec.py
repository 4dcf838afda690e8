"""The Python side of the wire protocol: a pure codec, bytes in and messages out, no I/O.

Layouts come from firmware_host/wire/spec.py, the one definition the C codec is generated from.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass, field

from firmware_host.wire.spec import (
    BY_ID,
    BY_NAME,
    MAX_ENCODED,
    MAX_PAYLOAD,
    SIZES,
    STRUCT,
    Message,
)


class CodecError(ValueError):
    pass


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE."""
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_encode(data: bytes) -> bytes:
    out = bytearray([0])
    code_at, code = 0, 1
    for b in data:
        if b == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
        else:
            out.append(b)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at, code = len(out), 1
                out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        i += 1
        if code == 0 or i + code - 1 > len(data):
            raise CodecError("bad COBS block")
        chunk = data[i:i + code - 1]
        if 0 in chunk:
            raise CodecError("zero inside COBS block")
        out += chunk
        i += code - 1
        if code != 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


def pack_body(msg: Message, fields: dict) -> bytes:
    out = bytearray()
    for f in msg.fields:
        v = fields[f.name]
        if f.count == 1:
            out += struct.pack("<" + STRUCT[f.type], v)
        else:
            n = fields[f.count] if isinstance(f.count, str) else f.count
            vals = list(v)[:n] if isinstance(f.count, str) else list(v)
            if len(vals) != n or n > f.max:
                raise CodecError(f"{msg.name}.{f.name}: {len(vals)} values for count {n} (max {f.max})")
            out += struct.pack(f"<{n}{STRUCT[f.type]}", *vals)
    return bytes(out)


def unpack_body(msg: Message, body: bytes) -> dict:
    out: dict = {}
    n = 0
    for f in msg.fields:
        cnt = out[f.count] if isinstance(f.count, str) else f.count
        size = SIZES[f.type] * cnt
        if cnt > f.max and f.count != 1 or n + size > len(body):
            raise CodecError(f"{msg.name}: body too short or count too large")
        vals = struct.unpack_from(f"<{cnt}{STRUCT[f.type]}", body, n)
        out[f.name] = vals[0] if f.count == 1 else list(vals)
        n += size
    if n != len(body):
        raise CodecError(f"{msg.name}: {len(body) - n} trailing bytes")
    return out


def encode(name: str, seq: int, **fields) -> bytes:
    """A whole frame with a delimiter on both ends (noise before it cannot merge into it)."""
    msg = BY_NAME[name]
    raw = struct.pack("<BH", msg.id, seq & 0xFFFF) + pack_body(msg, fields)
    raw += struct.pack("<H", crc16(raw))
    if len(raw) > MAX_PAYLOAD:
        raise CodecError(f"{name}: payload of {len(raw)} bytes exceeds {MAX_PAYLOAD}")
    return b"\x00" + cobs_encode(raw) + b"\x00"


@dataclass
class Frame:
    name: str
    seq: int
    fields: dict


@dataclass
class Parser:
    """Streaming frame parser: feed() any chunks, get whole valid frames; bad ones are counted."""

    buf: bytearray = field(default_factory=bytearray)
    overflow: bool = False
    frames_ok: int = 0
    bad_cobs: int = 0
    bad_crc: int = 0
    bad_length: int = 0
    overflows: int = 0
    unknown: int = 0

    @property
    def bad_frames(self) -> int:
        return self.bad_cobs + self.bad_crc + self.bad_length + self.overflows + self.unknown

    def feed(self, data: bytes) -> list[Frame]:
        frames = []
        for b in data:
            if b == 0:
                f = self._finish()
                if f is not None:
                    frames.append(f)
                self.buf.clear()
                self.overflow = False
            elif len(self.buf) < MAX_ENCODED:
                self.buf.append(b)
            else:
                self.overflow = True
        return frames

    def _finish(self):
        if self.overflow:
            self.overflows += 1
            return None
        if not self.buf:
            return None
        try:
            raw = cobs_decode(bytes(self.buf))
        except CodecError:
            self.bad_cobs += 1
            return None
        if len(raw) < 5:
            self.bad_length += 1
            return None
        if crc16(raw[:-2]) != struct.unpack_from("<H", raw, len(raw) - 2)[0]:
            self.bad_crc += 1
            return None
        mid, seq = struct.unpack_from("<BH", raw)
        body = raw[3:-2]
        self.frames_ok += 1
        msg = BY_ID.get(mid)
        if msg is None:
            self.unknown += 1
            return None
        try:
            return Frame(msg.name, seq, unpack_body(msg, body))
        except CodecError:
            self.bad_length += 1
            return None
