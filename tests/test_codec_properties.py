"""Property tests of the Python codec (hypothesis): COBS and frames round-trip for any content, a
stream of frames is found whole however it is split, garbage never yields a frame that was not
sent, and no valid frame exceeds the protocol's maximum size."""

import struct

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis not installed (pip install -e '.[test]')")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from firmware_host.wire.codec import Parser, cobs_decode, cobs_encode, encode  # noqa: E402
from firmware_host.wire.spec import MAX_ACT, MAX_ENCODED, MAX_FRAME, MAX_OBS, MAX_PAYLOAD, MESSAGES  # noqa: E402

F32 = st.floats(width=32, allow_nan=False)
VALUES = {"u8": st.integers(0, 0xFF), "u16": st.integers(0, 0xFFFF), "u32": st.integers(0, 0xFFFFFFFF), "f32": F32}


@st.composite
def messages(draw):
    """Any message of the spec with any field values its layout allows."""
    m = draw(st.sampled_from(MESSAGES))
    fields: dict = {}
    for f in m.fields:
        if f.count == 1:
            fields[f.name] = draw(VALUES[f.type])
        else:
            n = fields[f.count] if isinstance(f.count, str) else f.count
            fields[f.name] = draw(st.lists(VALUES[f.type], min_size=n, max_size=n))
    return m.name, draw(st.integers(0, 0xFFFF)), fields


@st.composite
def valid_messages(draw):
    """As messages(), with each variable-length array drawn at a length its count allows."""
    name, seq, fields = draw(messages())
    for counted, arr, cap in (("n_obs", "obs", MAX_OBS), ("n_act", "action", MAX_ACT)):
        if counted in fields:
            n = draw(st.integers(0, cap))
            fields[counted] = n
            fields[arr] = draw(st.lists(F32, min_size=n, max_size=n))
    return name, seq, fields


@given(st.binary(max_size=2 * MAX_PAYLOAD))
def test_cobs_round_trip_and_no_zero(data):
    enc = cobs_encode(data)
    assert 0 not in enc and cobs_decode(enc) == data
    assert len(enc) <= len(data) + 1 + len(data) // 254


@given(st.binary(max_size=MAX_PAYLOAD))
def test_payload_fits_the_maximum_frame(data):
    assert len(cobs_encode(data)) <= MAX_ENCODED and len(cobs_encode(data)) + 2 <= MAX_FRAME


@given(valid_messages())
def test_frame_round_trip(msg):
    name, seq, fields = msg
    frame = encode(name, seq, **fields)
    assert len(frame) <= MAX_FRAME
    (f,) = Parser().feed(frame)
    assert (f.name, f.seq) == (name, seq)
    for k, v in fields.items():
        got = f.fields[k]
        if isinstance(v, float):
            assert struct.pack("<f", got) == struct.pack("<f", v)
        else:
            assert got == v


@given(st.lists(valid_messages(), min_size=1, max_size=6), st.data())
@settings(max_examples=60)
def test_any_split_finds_every_frame(msgs, data):
    stream = b"".join(encode(n, s, **f) for n, s, f in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    p, got = Parser(), []
    for a, b in zip([0, *cuts], [*cuts, len(stream)]):
        got += p.feed(stream[a:b])
    assert [(f.name, f.seq) for f in got] == [(n, s) for n, s, _ in msgs] and p.bad_frames == 0


@given(st.binary(max_size=600), valid_messages())
def test_garbage_then_a_frame(garbage, msg):
    """Garbage before a frame costs at most the garbage: the frame after it is found intact."""
    name, seq, fields = msg
    got = Parser().feed(garbage + encode(name, seq, **fields))
    assert got and (got[-1].name, got[-1].seq) == (name, seq)
