/*
 * libFuzzer harness for the firmware core's command handling and control tick (bpd_fw.c), on the
 * rig configuration in bpd_rig_config.h. The input is a script of operations: bytes received from
 * the host, control ticks with arbitrary sensor readings (NaN and infinity included), policy
 * failures, end-stop / e-stop events. The first byte links the policy (bit 0) and a classical
 * controller for hand-over mode (bit 1). After every operation the safety rules of docs/protocol.md
 * must hold, or the harness aborts (a finding):
 *   - the actuator holds a finite value within the action limit, and zero unless RUNNING;
 *   - a tick whose position or angle reading is beyond its limit (or not a number) ends the run (rule 6);
 *   - a stop input zeroes the actuator at once, and it stays zero until the next tick ends the run with a
 *     STATE whose flags name the input (the emergency stop bit 9, an end stop bit 2);
 *   - a FAULT is left only through a RESET;
 *   - whatever CONFIG was taken, the configuration stays within the rig's (bpd_rig_config.h): a watchdog from 1 to
 *     the rig's own ticks, an action limit up to the rig's own, a position limit short of the track where the rig
 *     has one, and every limit positive and finite;
 *   - every byte the device sends parses as a frame with a valid CRC, none larger than BPD_MAX_FRAME.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bpd_fw.h"
#include "bpd_rig_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static float sensors[BPD_MAX_OBS], actuator[BPD_MAX_ACT];
static uint32_t now;
static int policy_fails;
static bpd_parser_t out;
static size_t frame_run; /* bytes since the last delimiter on the device's output */
static uint16_t state_flags; /* the flags of the last STATE the device sent */
static int state_sent;       /* a STATE since the harness last cleared it */

static uint32_t hal_now(void *ctx) { (void)ctx; return now; }
static uint32_t hal_cycles(void *ctx) { (void)ctx; return now * 100u; }
static void hal_read(void *ctx, float *raw, uint8_t n) { (void)ctx; memcpy(raw, sensors, (size_t)n * sizeof *raw); }
static void hal_write(void *ctx, const float *u, uint8_t n) { (void)ctx; memcpy(actuator, u, (size_t)n * sizeof *u); }
/* A frame the device sent: a STATE's flags kept, for the check that a stop names its input. */
static void on_out(void *ctx, const bpd_frame_t *frame)
{
    bpd_state_t m;
    (void)ctx;
    if (frame->id == BPD_MSG_STATE && bpd_unpack_state(frame->body, frame->body_len, &m) == 0) {
        state_flags = m.flags;
        state_sent = 1;
    }
}

static void hal_serial(void *ctx, const uint8_t *d, size_t n)
{
    size_t i;
    (void)ctx;
    for (i = 0; i < n; ++i) {
        frame_run = d[i] == 0 ? 0 : frame_run + 1;
        if (frame_run > BPD_MAX_ENCODED) abort();
    }
    bpd_parser_feed(&out, d, n, on_out, NULL);
}

static int policy(void *ctx, const float *obs, float *action)
{
    uint8_t i;
    (void)ctx;
    for (i = 0; i < BPD_RIG_ACT_DIM; ++i) action[i] = policy_fails ? 0.0f : obs[i % BPD_RIG_OBS_DIM] * 1e3f;
    return policy_fails ? -1 : 0;
}

/* Hand-over mode's classical controller: fails with the learned policy, and gives a non-finite action at rest. */
static int classical(void *ctx, const float *obs, float *action)
{
    uint8_t i;
    (void)ctx;
    for (i = 0; i < BPD_RIG_ACT_DIM; ++i) action[i] = 1.0f / obs[(i + 1u) % BPD_RIG_OBS_DIM];
    return policy_fails ? -1 : 0;
}

/* The observation a limit tests: a reading in counts converted as the core does. */
static float limited(uint8_t index)
{
    static const float cpu[BPD_RIG_N_POS] = BPD_RIG_COUNTS_PER_UNIT;
    return index < BPD_RIG_N_POS && cpu[index] > 0.0f ? sensors[index] / cpu[index] : sensors[index];
}

static uint8_t beyond(float x, float limit) { return (uint8_t)!(x <= limit && x >= -limit); }

/* Positive and finite, as a limit must be. */
static uint8_t limit_ok(float v) { return (uint8_t)(v > 0.0f && v - v == 0.0f); }

/* The configuration in force against the rig's bounds, from the generated header (not the core's copies of them). */
static uint8_t within_rig(const bpd_fw_t *fw)
{
    const float track = BPD_RIG_TRACK;
    return (uint8_t)(fw->watchdog_ticks >= 1u && fw->watchdog_ticks <= BPD_RIG_WATCHDOG_TICKS &&
                     limit_ok(fw->action_limit) && fw->action_limit <= BPD_RIG_ACTION_LIMIT &&
                     limit_ok(fw->pos_limit) && (track == 0.0f || fw->pos_limit < track) &&
                     limit_ok(fw->angle_limit));
}

static void check(const bpd_fw_t *fw)
{
    uint8_t i;
    if (fw->state > BPD_FAULT) abort();
    if (!within_rig(fw)) abort();
    for (i = 0; i < fw->act_dim; ++i) {
        float a = actuator[i];
        if (!(a == a) || a > fw->action_limit || a < -fw->action_limit) abort();
        if (fw->state != BPD_RUNNING && a != 0.0f) abort();
    }
    if (out.bad_cobs || out.bad_crc || out.bad_length || out.overflows) abort();
}

static float get_f32(const uint8_t *p)
{
    float v;
    memcpy(&v, p, sizeof v);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const bpd_fw_config_t rig = BPD_RIG_CONFIG_INIT;
    static bpd_fw_t fw;
    bpd_hal_t hal = {NULL, hal_now, hal_cycles, 100u, hal_read, hal_write, hal_serial};
    static const uint8_t hash[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    static bpd_handover_region_t region;
    size_t i = 0;
    uint8_t stop_pending = 0, stop_kinds = 0;
    memset(sensors, 0, sizeof sensors);
    memset(actuator, 0, sizeof actuator);
    now = 0;
    policy_fails = 0;
    frame_run = 0;
    bpd_parser_init(&out);
    bpd_fw_init(&fw, &hal, &rig);
    if (size && data[0] & 1) bpd_fw_set_policy(&fw, policy, NULL, hash);
    if (size && data[0] & 2) {
        uint8_t k;
        region.angle_index = BPD_RIG_ANGLE_INDEX;
        for (k = 0; k < BPD_MAX_OBS; ++k) region.bound[k] = 0.5f;
        bpd_fw_set_classical(&fw, classical, NULL, NULL, &region);
    }
    check(&fw);
    for (i = 1; i < size;) {
        uint8_t op = data[i++], k;
        bpd_fw_state_t before = fw.state;
        switch (op % 4) {
        case 0: { /* bytes from the host */
            size_t n = i < size ? data[i++] : 0;
            if (n > size - i) n = size - i;
            bpd_fw_on_bytes(&fw, data + i, n);
            i += n;
            /* STOP or RESET, then START, in these bytes: a new run, which a stop input still active trips again */
            if (!fw.external_stop && !fw.have_prev) stop_pending = stop_kinds = 0;
            break;
        }
        case 1: { /* a control tick with sensor readings from the input */
            for (k = 0; k < BPD_RIG_N_RAW && i + 4 <= size; ++k, i += 4) sensors[k] = get_f32(data + i);
            now += (uint32_t)(op >> 2) * (BPD_RIG_PERIOD_US / 16u) + BPD_RIG_PERIOD_US / 2u;
            {
                uint8_t over = (uint8_t)(beyond(limited(fw.sensors.pos_index), fw.pos_limit) ||
                                         beyond(limited(fw.sensors.angle_index), fw.angle_limit));
                state_sent = 0;
                bpd_fw_tick(&fw);
                if ((over || stop_pending) && fw.state == BPD_RUNNING) abort(); /* a limit or a stop let the run on */
                /* the STATE that ends a run on a stop input names it: the e-stop bit 9, an end stop bit 2 */
                if (stop_pending && state_sent &&
                    (((stop_kinds & BPD_STOP_EMERGENCY) && !(state_flags & BPD_FLAG_ESTOP)) ||
                     ((stop_kinds & BPD_STOP_END) && !(state_flags & BPD_FLAG_LIMIT_STOP))))
                    abort();
            }
            stop_pending = 0;
            stop_kinds = 0;
            break;
        }
        case 2:
            policy_fails = op >> 7;
            if (op & 0x40) { /* an end stop tripped, or the e-stop (bit 5) */
                bpd_fw_external_stop(&fw, (op & 0x20) ? BPD_STOP_EMERGENCY : BPD_STOP_END);
                stop_pending = (uint8_t)(fw.state == BPD_RUNNING);
                stop_kinds = stop_pending ? (uint8_t)(stop_kinds | ((op & 0x20) ? BPD_STOP_EMERGENCY : BPD_STOP_END))
                                          : 0;
            }
            break;
        default:
            now += (uint32_t)op << 8;
            break;
        }
        {
            uint32_t seed;
            int reset = bpd_fw_take_reset(&fw, &seed);
            if (before == BPD_FAULT && fw.state != BPD_FAULT && !reset) abort(); /* left FAULT without RESET */
        }
        check(&fw);
        if (fw.state != BPD_RUNNING) stop_pending = stop_kinds = 0;
        for (k = 0; stop_pending && k < fw.act_dim; ++k)
            if (actuator[k] != 0.0f) abort(); /* a stop input holds the actuator at zero until the run ends */
    }
    return 0;
}
