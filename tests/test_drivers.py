"""The board-independent driver logic (firmware_host/c/core/bpd_drivers.c), compiled on this machine with
the strict flags and driven through ctypes, on hand-computed answers: encoder unwrapping across the
16-bit timer's overflow, direction and scale; PWM duty, direction, clamps and blocked directions; the
stop inputs; and the core's external-stop hook (an end stop ends the run as a limit stop, the emergency stop with
its own flag, zero at once)."""

import ctypes
import math
import shutil
import subprocess

import pytest

from export.cc import OPT, STRICT, compile_to
from firmware_host.rig.device import CSRC
from firmware_host.wire.codec import Parser, encode
from firmware_host.wire.spec import FLAGS, STATES


class Encoder(ctypes.Structure):
    _fields_ = [("last", ctypes.c_uint16), ("count", ctypes.c_int32)]


class Pwm(ctypes.Structure):
    _fields_ = [("duty", ctypes.c_uint16), ("reverse", ctypes.c_uint8)]


@pytest.fixture(scope="module")
def drv(tmp_path_factory):
    lib = compile_to(tmp_path_factory.mktemp("drv") / "libdrv.so",
                     [*STRICT, *OPT, "-fPIC", "-shared", f"-I{CSRC}", str(CSRC / "bpd_drivers.c")], "drivers")
    d = ctypes.CDLL(str(lib))
    d.bpd_encoder_update.restype = ctypes.c_int32
    d.bpd_encoder_counts.restype = ctypes.c_float
    d.bpd_encoder_counts.argtypes = [ctypes.POINTER(Encoder), ctypes.c_uint8]
    d.bpd_encoder_position.restype = ctypes.c_float
    d.bpd_encoder_position.argtypes = [ctypes.POINTER(Encoder), ctypes.c_float, ctypes.c_uint8]
    d.bpd_pwm_from_command.restype = Pwm
    d.bpd_pwm_from_command.argtypes = [ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_uint16,
                                       ctypes.c_uint8, ctypes.c_uint8]
    for f in (d.bpd_stops_update, d.bpd_stops_take, d.bpd_stops_blocked, d.bpd_stops_ending):
        f.restype = ctypes.c_uint8
    return d


def _encoder(drv, raw0):
    e = Encoder()
    drv.bpd_encoder_init(ctypes.byref(e), ctypes.c_uint16(raw0))
    return e


def test_encoder_unwraps_across_the_16_bit_overflow(drv):
    e = _encoder(drv, 65530)
    assert drv.bpd_encoder_update(ctypes.byref(e), ctypes.c_uint16(4)) == 10  # 65530 -> 65535 -> 0 -> 4
    assert e.count == 10
    assert drv.bpd_encoder_update(ctypes.byref(e), ctypes.c_uint16(65526)) == -14  # back down across 0
    assert e.count == -4
    e = _encoder(drv, 0)
    for _ in range(5):  # five turns of 30000 counts forward: 150000, far past 16 bits
        drv.bpd_encoder_update(ctypes.byref(e), ctypes.c_uint16((e.last + 30000) & 0xFFFF))
    assert e.count == 150000
    assert drv.bpd_encoder_update(ctypes.byref(e), ctypes.c_uint16((e.last - 32768) & 0xFFFF)) == -32768


def test_encoder_direction_and_scale(drv):
    e = _encoder(drv, 100)
    drv.bpd_encoder_update(ctypes.byref(e), ctypes.c_uint16(100 + 1024))  # a quarter turn of 4096 counts
    assert drv.bpd_encoder_counts(ctypes.byref(e), 0) == 1024.0
    assert drv.bpd_encoder_counts(ctypes.byref(e), 1) == -1024.0
    cpu = 4096 / (2 * math.pi)  # counts per radian
    assert drv.bpd_encoder_position(ctypes.byref(e), cpu, 0) == pytest.approx(math.pi / 2, rel=1e-6)
    assert drv.bpd_encoder_position(ctypes.byref(e), cpu, 1) == pytest.approx(-math.pi / 2, rel=1e-6)
    assert drv.bpd_encoder_position(ctypes.byref(e), 10000.0, 0) == pytest.approx(0.1024)  # 0.1 mm a count
    assert drv.bpd_encoder_position(ctypes.byref(e), 0.0, 0) == 0.0  # not an encoder: never a division by 0


@pytest.mark.parametrize("u, invert, duty, reverse", [
    (1.5, 0, 500, 0),       # 1.5 of full scale 12 at top 4000: 500
    (-1.5, 0, 500, 1),
    (-1.5, 1, 500, 0),      # a motor wired the other way round
    (1.5, 1, 500, 1),
    (9.0, 0, 2000, 0),      # clamped to the action limit 6: 6/12 * 4000
    (-100.0, 0, 2000, 1),
    (0.0, 0, 0, 0),
    (0.0015, 0, 1, 0),      # 0.5 of a step rounds up
    (0.0014, 0, 0, 0),      # below half a step: 0, and no direction drive
])
def test_pwm_duty_direction_and_clamp(drv, u, invert, duty, reverse):
    p = drv.bpd_pwm_from_command(u, 6.0, 12.0, 4000, invert, 0)
    assert (p.duty, p.reverse) == (duty, reverse)


def test_pwm_never_exceeds_top_and_zero_on_fault(drv):
    assert drv.bpd_pwm_from_command(20.0, 20.0, 12.0, 4000, 0, 0).duty == 4000  # limit above full scale
    for u, lim, fs in ((math.nan, 6.0, 12.0), (math.inf, 6.0, 12.0), (-math.inf, 6.0, 12.0), (1.0, math.nan, 12.0),
                       (1.0, 0.0, 12.0), (1.0, -1.0, 12.0), (1.0, 6.0, 0.0), (1.0, 6.0, math.inf)):
        p = drv.bpd_pwm_from_command(u, lim, fs, 4000, 0, 0)
        assert (p.duty, p.reverse) == (0, 0), (u, lim, fs)


@pytest.mark.parametrize("u, invert, blocked, duty", [
    (3.0, 0, 1, 0), (-3.0, 0, 1, 1000),     # positive blocked (the right end stop held): may drive away
    (3.0, 0, 2, 1000), (-3.0, 0, 2, 0),
    (3.0, 1, 1, 0),                          # blocked in command terms, whatever the motor's wiring
    (3.0, 0, 3, 0), (-3.0, 0, 3, 0),         # the emergency stop: both
])
def test_pwm_blocked_directions(drv, u, invert, blocked, duty):
    assert drv.bpd_pwm_from_command(u, 6.0, 12.0, 4000, invert, blocked).duty == duty


class Stops(ctypes.Structure):
    _fields_ = [("active", ctypes.c_uint8), ("tripped", ctypes.c_uint8)]


def test_stops_trip_once_and_block_while_held(drv):
    s = Stops()
    ref = ctypes.byref(s)
    drv.bpd_stops_init(ref)
    left, right, estop = 0b001, 0b010, 0b100
    pos, neg = right | estop, left | estop  # right blocks positive commands, left negative, the e-stop both
    assert drv.bpd_stops_update(ref, 0) == 0 and drv.bpd_stops_blocked(ref, pos, neg) == 0
    assert drv.bpd_stops_update(ref, right) == right  # the interrupt: the right stop closes
    assert drv.bpd_stops_update(ref, right) == 0      # the tick's poll: held, no new event
    assert drv.bpd_stops_take(ref) == right and drv.bpd_stops_take(ref) == 0  # the event is taken once
    assert drv.bpd_stops_blocked(ref, pos, neg) == 1  # held, its event taken: towards its side only
    assert drv.bpd_stops_update(ref, right | estop) == estop
    assert drv.bpd_stops_take(ref) == estop and drv.bpd_stops_blocked(ref, pos, neg) == 3
    drv.bpd_stops_update(ref, 0)  # all released: nothing blocked
    assert drv.bpd_stops_blocked(ref, pos, neg) == 0
    assert drv.bpd_stops_update(ref, left) == left  # an edge the interrupt missed: the poll sees it


def test_a_stop_event_blocks_both_directions_until_taken(drv):
    """From a stop's interrupt until the tick takes its event (and the core ends the run), no command moves
    the motor: not one away from the stop (an ACTION taken before that tick), nor one into it once the switch
    has bounced open."""
    s = Stops()
    ref = ctypes.byref(s)
    drv.bpd_stops_init(ref)
    right, pos, neg = 0b010, 0b110, 0b101
    assert drv.bpd_stops_update(ref, right) == right  # the cart hits the right end stop
    blocked = drv.bpd_stops_blocked(ref, pos, neg)
    assert blocked == 3 and drv.bpd_pwm_from_command(-1.5, 6.0, 12.0, 4000, 0, blocked).duty == 0  # away: 0
    drv.bpd_stops_update(ref, 0)  # it bounces off: the switch opens before the tick
    blocked = drv.bpd_stops_blocked(ref, pos, neg)
    assert blocked == 3 and drv.bpd_pwm_from_command(1.5, 6.0, 12.0, 4000, 0, blocked).duty == 0  # into it: 0
    assert drv.bpd_stops_take(ref) == right and drv.bpd_stops_blocked(ref, pos, neg) == 0  # the tick took it


def test_a_held_emergency_stop_ends_a_run_at_every_tick_an_end_stop_only_on_its_press(drv):
    """ISO 13850: releasing the emergency stop must not by itself restart motion. The stops a tick ends a run by
    were the press events only, so a START with the e-stop held gave a run held at zero that drove again the moment
    it was released. Now the input that blocks both directions ends a run at every tick while held; a held end stop
    still ends none (a new run may drive away from it)."""
    s = Stops()
    ref = ctypes.byref(s)
    drv.bpd_stops_init(ref)
    left, right, estop = 0b001, 0b010, 0b100
    pos, neg = right | estop, left | estop
    drv.bpd_stops_update(ref, estop)  # pressed while idle (at power-on, or between runs)
    assert drv.bpd_stops_ending(ref, pos, neg) == estop  # its press: taken
    assert drv.bpd_stops_ending(ref, pos, neg) == estop  # held, no new event: a run started now still ends
    assert drv.bpd_stops_take(ref) == 0  # the event was taken with it
    drv.bpd_stops_update(ref, 0)  # released: nothing ends a run, nothing blocked
    assert drv.bpd_stops_ending(ref, pos, neg) == 0 and drv.bpd_stops_blocked(ref, pos, neg) == 0
    assert drv.bpd_stops_update(ref, right) == right  # an end stop: its press ends the run ...
    assert drv.bpd_stops_ending(ref, pos, neg) == right
    assert drv.bpd_stops_ending(ref, pos, neg) == 0  # ... held, it ends no later run, and blocks its side only
    assert drv.bpd_stops_blocked(ref, pos, neg) == 1
    drv.bpd_stops_update(ref, left | right)  # both end stops held: every command blocked, yet no run ends
    drv.bpd_stops_take(ref)
    assert drv.bpd_stops_blocked(ref, pos, neg) == 3 and drv.bpd_stops_ending(ref, pos, neg) == 0


HARNESS = r"""
#include <string.h>
#include "bpd_fw.h"
static bpd_fw_t fw;
static float act[BPD_MAX_ACT], sens[BPD_MAX_OBS];
static uint8_t tx[4096];
static size_t tx_len;
static uint32_t now;
static uint32_t h_now(void *c) { (void)c; return now; }
static uint32_t h_cycles(void *c) { (void)c; return now; }
static void h_read(void *c, float *raw, uint8_t n) { (void)c; memcpy(raw, sens, n * sizeof *raw); }
static void h_write(void *c, const float *u, uint8_t n) { (void)c; memcpy(act, u, n * sizeof *u); }
static void h_serial(void *c, const uint8_t *d, size_t n)
{
    (void)c;
    if (tx_len + n <= sizeof tx) { memcpy(tx + tx_len, d, n); tx_len += n; }
}
void t_init(void);
void t_init(void)
{
    bpd_hal_t hal = {0, h_now, h_cycles, 1u, h_read, h_write, h_serial};
    bpd_fw_config_t cfg = {10000u, 4u, 1u, {2u, 0u, {0.0f}, {0.0f}, 0u, 1u}, 5u, 3.0f, 1.0f, 1.0f, 0.0f};
    bpd_fw_init(&fw, &hal, &cfg);
}
void t_rx(const uint8_t *d, size_t n);
void t_rx(const uint8_t *d, size_t n) { bpd_fw_on_bytes(&fw, d, n); }
void t_tick(void);
void t_tick(void) { now += 10000u; bpd_fw_tick(&fw); }
void t_stop(uint8_t which);
void t_stop(uint8_t which) { bpd_fw_external_stop(&fw, which); }
float t_act(void);
float t_act(void) { return act[0]; }
int t_state(void);
int t_state(void) { return (int)fw.state; }
size_t t_tx(uint8_t *out, size_t cap);
size_t t_tx(uint8_t *out, size_t cap)
{
    size_t n = tx_len < cap ? tx_len : cap;
    memcpy(out, tx, n);
    tx_len = 0;
    return n;
}
"""


@pytest.fixture
def core(tmp_path):
    (tmp_path / "harness.c").write_text(HARNESS)
    srcs = [str(CSRC / f) for f in ("bpd_fw.c", "bpd_wire.c", "bpd_msgs.c")] + [str(tmp_path / "harness.c")]
    lib = ctypes.CDLL(str(compile_to(tmp_path / "libcore.so", [*STRICT, *OPT, "-fPIC", "-shared", f"-I{CSRC}", *srcs],
                                     "core")))
    lib.t_act.restype = ctypes.c_float
    lib.t_stop.argtypes = [ctypes.c_uint8]
    lib.t_tx.restype = ctypes.c_size_t
    lib.t_init()
    buf = (ctypes.c_uint8 * 4096)()
    parser = Parser()

    def frames():
        return parser.feed(bytes(buf[:lib.t_tx(buf, 4096)]))

    frames()
    return lib, frames


END, EMERGENCY = 1, 2  # bpd_fw.h: BPD_STOP_END, BPD_STOP_EMERGENCY


def test_external_stop_zeroes_at_once_and_ends_the_run_as_a_limit_stop(core):
    lib, frames = core
    start = encode("start", 0)
    lib.t_rx(start, len(start))
    lib.t_tick()
    st = [f for f in frames() if f.name == "state"][0]
    action = encode("action", 1, echo_seq=st.seq, n_act=1, action=[2.0])
    lib.t_rx(action, len(action))
    assert lib.t_act() == pytest.approx(2.0)
    lib.t_stop(END)  # the end stop's interrupt: zero now, before any tick
    assert lib.t_act() == 0.0 and lib.t_state() == STATES["running"]
    late = encode("action", 2, echo_seq=st.seq, n_act=1, action=[2.0])
    lib.t_rx(late, len(late))  # not applied while the stop is pending
    assert lib.t_act() == 0.0
    lib.t_tick()  # within one tick: the run ends as a limit stop
    (last,) = [f for f in frames() if f.name == "state"]
    assert last.fields["flags"] == FLAGS["limit_stop"] and last.fields["action"] == [0.0]
    assert lib.t_state() == STATES["idle"]
    lib.t_stop(END)  # outside a run: nothing
    again = encode("start", 3)
    lib.t_rx(again, len(again))
    lib.t_tick()  # a new run is not stopped by the old stop
    (st2,) = [f for f in frames() if f.name == "state"]
    assert st2.fields["flags"] & FLAGS["running"] and lib.t_state() == STATES["running"]


def test_the_emergency_stop_ends_the_run_with_its_own_flag(core):
    """The board hands the core which input ended the run: the emergency stop's STATE has its own flag alone (an end
    stop's and the emergency stop's were one flag, limit_stop, which a host could not tell apart); both inputs at once
    give both flags. An input the board does not name (0, or a bit of neither, as a port passing its own mask of the
    stop pins would) is an end stop's: such a run ended with no stop flag at all, its last STATE saying nothing of why
    the actuator went to zero."""
    lib, frames = core
    both = FLAGS["estop"] | FLAGS["limit_stop"]
    # the last two: an input the board does not name, an end stop
    for seq, which, flags in ((0, EMERGENCY, FLAGS["estop"]), (2, END | EMERGENCY, both), (4, 0, FLAGS["limit_stop"]),
                              (6, 4, FLAGS["limit_stop"]), (8, EMERGENCY | 8, FLAGS["estop"])):
        start = encode("start", seq)
        lib.t_rx(start, len(start))
        lib.t_tick()
        st = [f for f in frames() if f.name == "state"][0]
        action = encode("action", seq + 1, echo_seq=st.seq, n_act=1, action=[2.0])
        lib.t_rx(action, len(action))
        lib.t_stop(which)
        assert lib.t_act() == 0.0 and lib.t_state() == STATES["running"]
        lib.t_tick()
        (last,) = [f for f in frames() if f.name == "state"]
        assert (last.fields["flags"], last.fields["action"]) == (flags, [0.0]), which
        assert lib.t_state() == STATES["idle"]


# The same driver code on the Cortex-M4F instruction set: an image for QEMU's netduinoplus2 (an
# STM32F405: the Nucleo's F446 is not modelled, its board-independent code runs here) that works the
# cases above and writes the answers through semihosting.
ON_TARGET = r"""
#include "bpd_drivers.h"
static void sh(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
}
static char line[512];
static unsigned len;
static void put(long v)
{
    char d[12];
    int n = 0;
    unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
    if (v < 0) line[len++] = '-';
    do { d[n++] = (char)('0' + u % 10u); u /= 10u; } while (u);
    while (n) line[len++] = d[--n];
    line[len++] = ' ';
}
int main(void);
int main(void)
{
    static const float cmd[][3] = {{1.5f, 0, 0}, {-1.5f, 0, 0}, {-1.5f, 1, 0}, {9.0f, 0, 0}, {-100.0f, 0, 0},
                                   {0.0015f, 0, 0}, {0.0014f, 0, 0}, {3.0f, 0, 1}, {-3.0f, 0, 1}, {-3.0f, 0, 3}};
    bpd_encoder_t e;
    bpd_stops_t s;
    unsigned i;
    bpd_encoder_init(&e, 65530u);
    put(bpd_encoder_update(&e, 4u));
    put(bpd_encoder_update(&e, 65526u));
    put(e.count);
    bpd_encoder_init(&e, 0u);
    for (i = 0; i < 5u; ++i) bpd_encoder_update(&e, (uint16_t)(e.last + 30000u));
    put(e.count);
    put(bpd_encoder_update(&e, (uint16_t)(e.last - 32768u)));
    put((long)(bpd_encoder_position(&e, 4096.0f, 1) * 1000.0f));
    for (i = 0; i < sizeof cmd / sizeof cmd[0]; ++i) {
        bpd_pwm_t p = bpd_pwm_from_command(cmd[i][0], 6.0f, 12.0f, 4000u, (uint8_t)cmd[i][1], (uint8_t)cmd[i][2]);
        put(p.duty);
        put(p.reverse);
    }
    bpd_stops_init(&s);
    put(bpd_stops_update(&s, 2u));
    put(bpd_stops_update(&s, 2u));
    put(bpd_stops_blocked(&s, 6u, 5u));
    put(bpd_stops_take(&s));
    put(bpd_stops_take(&s));
    put(bpd_stops_blocked(&s, 6u, 5u));
    bpd_stops_update(&s, 6u);
    put(bpd_stops_ending(&s, 6u, 5u));
    put(bpd_stops_ending(&s, 6u, 5u));
    line[len++] = '\n';
    line[len] = 0;
    sh(0x04, line);    /* SYS_WRITE0 */
    sh(0x18, (const void *)0x20026u); /* SYS_EXIT, reason: application exit (a value, on 32-bit Arm) */
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                    reason="arm-none-eabi-gcc or qemu-system-arm not installed")
def test_driver_logic_on_the_cortex_m4f_under_qemu(tmp_path):
    from firmware_host.measure.build import compile_image

    src = tmp_path / "on_target.c"
    src.write_text(ON_TARGET)
    img = compile_image("cortex-m4f", [src, CSRC / "bpd_drivers.c"], [CSRC], tmp_path, "drivers",
                        ldscript="stm32f405.ld")
    p = subprocess.run(["qemu-system-arm", "-M", "netduinoplus2", "-nographic", "-monitor", "none", "-serial", "none",
                        "-semihosting-config", "enable=on,target=native", "-kernel", str(img.elf)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-300:]  # the image exited through semihosting, not by a fault or timeout
    got = [int(x) for x in (p.stdout + p.stderr).split()]
    # the encoder: +10 across the overflow, -14 back, count -4; five 30000-count steps; -32768; 150000 - 32768
    # counts inverted at 4096 per unit: -117232 / 4096 = -28.621 units
    assert got[:6] == [10, -14, -4, 150000, -32768, -28621]
    # PWM (duty, reverse): as on the host, hand-computed
    assert got[6:26] == [500, 0, 500, 1, 500, 0, 2000, 0, 2000, 1, 1, 0, 0, 0, 0, 0, 1000, 1, 0, 0]
    # the stops: one event, held (both blocked until its event is taken), taken once, then positive blocked; the
    # emergency stop (4: in both masks) pressed beside it ends a run at its press and at every tick it is held
    assert got[26:] == [2, 0, 3, 2, 0, 1, 4, 4]
