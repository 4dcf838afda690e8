/* bpd firmware core; see bpd_fw.h. */
#include "bpd_fw.h"

#include <string.h>

/* Neither NaN nor infinite. */
static uint8_t finite(float v) { return (uint8_t)(v == v && v - v == 0.0f); }

static void send(bpd_fw_t *fw, uint8_t id, const uint8_t *body, size_t len)
{
    uint8_t frame[BPD_FRAME_MAX];
    size_t n = bpd_frame(id, fw->tx_seq++, body, len, frame);
    if (n) fw->hal.serial_write(fw->hal.ctx, frame, n);
}

static void actuator_zero(bpd_fw_t *fw)
{
    memset(fw->applied, 0, sizeof fw->applied);
    fw->action_flags = 0;
    fw->hal.write_actuator(fw->hal.ctx, fw->applied, fw->act_dim);
}

/* The answer to the command frame f: its id, the status and its header seq. */
static void send_ack(bpd_fw_t *fw, const bpd_frame_t *f, uint8_t status)
{
    bpd_ack_t m;
    uint8_t body[8];
    m.of = f->id;
    m.status = status;
    m.echo_seq = f->seq;
    send(fw, BPD_MSG_ACK, body, bpd_pack_ack(&m, body, sizeof body));
}

static uint32_t rx_dropped(const bpd_fw_t *fw)
{
    const bpd_parser_t *p = &fw->parser;
    return p->bad_cobs + p->bad_crc + p->bad_length + p->overflows + fw->bad_bodies + fw->unknown_ids;
}

static void send_info(bpd_fw_t *fw)
{
    bpd_info_t m;
    uint8_t body[48];
    m.protocol = BPD_PROTOCOL_VERSION;
    m.fw_major = BPD_FW_MAJOR;
    m.fw_minor = BPD_FW_MINOR;
    m.obs_dim = fw->obs_dim;
    m.act_dim = fw->act_dim;
    m.caps = (uint8_t)((fw->policy ? BPD_CAP_DEVICE_POLICY : 0u) | (fw->sensors.measured_vel ? 0u : BPD_CAP_ENCODERS) |
                       (fw->policy && fw->classical ? BPD_CAP_HANDOVER : 0u));
    m.period_us = fw->period_us;
    memcpy(m.model_hash, fw->model_hash, 8);
    m.boot = fw->boot;
    m.rx_dropped = rx_dropped(fw);
    m.actions_dropped = fw->late_actions;
    /* the worse of the two controllers' self-tests (a failure's FAULT detail says which) */
    m.selftest = fw->classical_selftest > fw->selftest ? fw->classical_selftest : fw->selftest;
    m.cycle_hz = fw->hal.cycles_per_us * 1000000u;
    send(fw, BPD_MSG_INFO, body, bpd_pack_info(&m, body, sizeof body));
}

static void enter_fault(bpd_fw_t *fw, uint8_t code, uint32_t detail)
{
    bpd_fault_t m;
    uint8_t body[8];
    actuator_zero(fw);
    fw->state = BPD_FAULT;
    fw->fault_code = code;
    m.code = code;
    m.detail = detail;
    send(fw, BPD_MSG_FAULT, body, bpd_pack_fault(&m, body, sizeof body));
}

/* The self-test of one controller: each stored observation through it, its action compared with the stored
 * one (equal when the tolerance is 0, else within it; a NaN fails). The detail of a failure: the pair in bits
 * 0-7, the action component in bits 8-15, bit 31 when the call itself returned an error (the caller adds bit
 * 30 for the classical controller). Returns BPD_SELFTEST_NONE, _PASS or _FAIL. */
static uint8_t selftest_of(const bpd_fw_t *fw, bpd_policy_fn fn, void *ctx, const bpd_selftest_t *st,
                           uint32_t *detail)
{
    uint8_t k, i;
    *detail = 0;
    if (!fn || !st || st->n == 0) return BPD_SELFTEST_NONE;
    for (k = 0; k < st->n; ++k) {
        float act[BPD_MAX_ACT];
        const float *want = st->action + (size_t)k * fw->act_dim;
        memset(act, 0, sizeof act);
        if (fn(ctx, st->obs + (size_t)k * fw->obs_dim, act) != 0) {
            *detail = 0x80000000u | k;
            return BPD_SELFTEST_FAIL;
        }
        for (i = 0; i < fw->act_dim; ++i) {
            float d = act[i] - want[i];
            uint8_t ok = st->tol == 0.0f ? (uint8_t)(act[i] == want[i]) : (uint8_t)((d < 0.0f ? -d : d) <= st->tol);
            if (!ok) {
                *detail = (uint32_t)k | ((uint32_t)i << 8);
                return BPD_SELFTEST_FAIL;
            }
        }
    }
    return BPD_SELFTEST_PASS;
}

/* The self-test of both controllers (boot, RESET): the learned policy's, and the classical one's (hand-over). */
static void run_selftest(bpd_fw_t *fw)
{
    fw->selftest = selftest_of(fw, fw->policy, fw->policy_ctx, fw->selftest_pairs, &fw->selftest_detail);
    fw->classical_selftest = selftest_of(fw, fw->classical, fw->classical_ctx, fw->classical_pairs,
                                         &fw->classical_selftest_detail);
    if (fw->classical_selftest == BPD_SELFTEST_FAIL) fw->classical_selftest_detail |= 0x40000000u;
}

/* STOP: the actuator to zero; a run ends (IDLE) but a fault stays until RESET. */
static void stop(bpd_fw_t *fw)
{
    actuator_zero(fw);
    if (fw->state == BPD_RUNNING) fw->state = BPD_IDLE;
}

/* Clamp to the action limit, write the actuator, remember what was applied. A non-finite component (of a host's
 * ACTION: a controller's is a policy error, run_controller) becomes 0. Either change sets the clamped flag, which
 * the next STATE carries with the action. */
static uint16_t apply_action(bpd_fw_t *fw, const float *a)
{
    uint16_t flags = 0;
    uint8_t i;
    for (i = 0; i < fw->act_dim; ++i) {
        float v = a[i];
        if (!finite(v)) {
            v = 0.0f;
            flags |= BPD_FLAG_CLAMPED;
        }
        if (v > fw->action_limit) { v = fw->action_limit; flags |= BPD_FLAG_CLAMPED; }
        if (v < -fw->action_limit) { v = -fw->action_limit; flags |= BPD_FLAG_CLAMPED; }
        fw->applied[i] = v;
    }
    fw->hal.write_actuator(fw->hal.ctx, fw->applied, fw->act_dim);
    fw->action_flags = flags;
    return flags;
}

/* A limit is a positive finite number: an infinite one would let anything through. */
static uint8_t limit_ok(float v) { return (uint8_t)(finite(v) && v > 0.0f); }

/* CONFIG is taken in IDLE only, with positive finite limits and a watchdog, each bounded by the rig the firmware was
 * built with (bpd_fw_config_t), so that a host with a bug, or with another rig's YAML, sets no more than this rig
 * takes: an action limit no wider than the rig's own (no more than its motor takes); a position limit short of its
 * track where it has one (at the track the cart would stop only on the hard stops, as the YAML's own is refused) (the hard stops; a rig without one, a rotary arm say, any); an angle limit any (a
 * swing-up pole swings freely); a watchdog from 1 to the rig's own ticks (a host may shorten it, never lengthen how
 * long the actuator runs on after it goes silent). Then the device's own period (or 0: keep it) and a mode the
 * device can run (device: a policy; hand-over: both controllers). A refused CONFIG changes nothing. */
static uint8_t config_ok(const bpd_fw_t *fw, const bpd_config_t *m)
{
    return fw->state == BPD_IDLE && (m->period_us == 0 || m->period_us == fw->period_us) && m->watchdog_ticks > 0 &&
           m->watchdog_ticks <= fw->rig_watchdog_ticks && limit_ok(m->action_limit) &&
           m->action_limit <= fw->rig_action_limit && limit_ok(m->pos_limit) &&
           (fw->rig_track == 0.0f || m->pos_limit < fw->rig_track) && limit_ok(m->angle_limit) &&
           m->mode <= BPD_MODE_HANDOVER && !(m->mode == BPD_MODE_DEVICE && fw->policy == NULL) &&
           !(m->mode == BPD_MODE_HANDOVER && (fw->policy == NULL || fw->classical == NULL));
}

static void on_frame(void *ctx, const bpd_frame_t *f)
{
    bpd_fw_t *fw = (bpd_fw_t *)ctx;
    union {
        bpd_hello_t hello;
        bpd_config_t config;
        bpd_start_t start;
        bpd_stop_t stop;
        bpd_reset_t reset;
        bpd_action_t action;
    } m;
    int bad;
    switch (f->id) {
    case BPD_MSG_HELLO: bad = bpd_unpack_hello(f->body, f->body_len, &m.hello); break;
    case BPD_MSG_CONFIG: bad = bpd_unpack_config(f->body, f->body_len, &m.config); break;
    case BPD_MSG_START: bad = bpd_unpack_start(f->body, f->body_len, &m.start); break;
    case BPD_MSG_STOP: bad = bpd_unpack_stop(f->body, f->body_len, &m.stop); break;
    case BPD_MSG_RESET: bad = bpd_unpack_reset(f->body, f->body_len, &m.reset); break;
    case BPD_MSG_ACTION:
        bad = bpd_unpack_action(f->body, f->body_len, &m.action) || m.action.n_act != fw->act_dim;
        break;
    default: /* unknown, or a message only the device sends */
        fw->unknown_ids++;
        return;
    }
    if (bad) { /* a body of the wrong size for its id: counted, dropped, not answered */
        fw->bad_bodies++;
        return;
    }
    switch (f->id) {
    case BPD_MSG_HELLO:
        send_info(fw);
        break;
    case BPD_MSG_CONFIG: {
        uint8_t ok = config_ok(fw, &m.config);
        if (ok) {
            fw->watchdog_ticks = m.config.watchdog_ticks;
            fw->mode = m.config.mode;
            fw->action_limit = m.config.action_limit;
            fw->pos_limit = m.config.pos_limit;
            fw->angle_limit = m.config.angle_limit;
        }
        send_ack(fw, f, ok ? BPD_ACK_OK : BPD_ACK_REJECTED);
        break;
    }
    case BPD_MSG_START:
        if (fw->state == BPD_IDLE && fw->mode == BPD_MODE_DEVICE && fw->selftest == BPD_SELFTEST_FAIL) {
            /* the policy this run would use failed its self-test: refused, and the device faults */
            send_ack(fw, f, BPD_ACK_REJECTED);
            enter_fault(fw, BPD_FAULT_SELFTEST, fw->selftest_detail);
        } else if (fw->state == BPD_IDLE && fw->mode == BPD_MODE_HANDOVER &&
                   fw->classical_selftest == BPD_SELFTEST_FAIL) {
            /* hand-over without a classical controller to fall back on: refused likewise (a failed learned
             * policy is not: the classical controller then acts for the whole run) */
            send_ack(fw, f, BPD_ACK_REJECTED);
            enter_fault(fw, BPD_FAULT_SELFTEST, fw->classical_selftest_detail);
        } else if (fw->state == BPD_IDLE) {
            fw->state = BPD_RUNNING;
            fw->ticks_without_action = 0;
            fw->have_prev = 0; /* the first STATE: velocities 0, no overrun, no round trip, not stale */
            fw->rtt_us = 0;
            fw->jitter_max_us = 0;
            fw->state_open = 0; /* no STATE of this run yet: no ACTION can be accepted */
            fw->external_stop = 0; /* a board whose stop input is still active calls it again before the tick */
            fw->handover_latched = 0;
            actuator_zero(fw);
            send_ack(fw, f, BPD_ACK_OK);
        } else {
            send_ack(fw, f, BPD_ACK_REJECTED);
        }
        break;
    case BPD_MSG_STOP:
        stop(fw);
        send_ack(fw, f, BPD_ACK_OK);
        break;
    case BPD_MSG_RESET:
        actuator_zero(fw);
        fw->state = BPD_IDLE;
        fw->fault_code = BPD_FAULT_NONE;
        fw->reset_seed = m.reset.seed;
        fw->reset_requested = 1;
        fw->have_prev = 0;
        run_selftest(fw);
        send_ack(fw, f, BPD_ACK_OK);
        break;
    case BPD_MSG_ACTION: {
        /* Accepted: RUNNING, and the first answer to the latest STATE (matched by equality only, so
         * the seq's wrap needs no rule). Anything else is dropped and counted, never applied late. */
        uint32_t rtt;
        if (fw->state != BPD_RUNNING || !fw->state_open || m.action.echo_seq != fw->last_state_seq) {
            fw->late_actions++;
            break;
        }
        fw->state_open = 0;
        fw->ticks_without_action = 0; /* the host is there: the watchdog restarts, in either mode */
        if (fw->mode == BPD_MODE_HOST && !fw->external_stop) apply_action(fw, m.action.action);
        rtt = fw->hal.now_us(fw->hal.ctx) - fw->last_state_us;
        fw->rtt_us = rtt ? rtt : 1u; /* 0 means unanswered */
        break;
    }
    default:
        break;
    }
}

void bpd_fw_init(bpd_fw_t *fw, const bpd_hal_t *hal, const bpd_fw_config_t *cfg)
{
    memset(fw, 0, sizeof *fw);
    fw->hal = *hal;
    fw->sensors = cfg->sensors;
    fw->obs_dim = cfg->obs_dim > BPD_MAX_OBS ? BPD_MAX_OBS : cfg->obs_dim;
    fw->act_dim = cfg->act_dim > BPD_MAX_ACT ? BPD_MAX_ACT : cfg->act_dim;
    if (fw->sensors.pos_index >= fw->obs_dim) fw->sensors.pos_index = 0;
    if (fw->sensors.angle_index >= fw->obs_dim) fw->sensors.angle_index = 0;
    fw->period_us = cfg->period_us;
    fw->watchdog_ticks = cfg->watchdog_ticks;
    fw->mode = BPD_MODE_HOST;
    fw->action_limit = cfg->action_limit;
    fw->rig_action_limit = cfg->action_limit;
    fw->rig_watchdog_ticks = cfg->watchdog_ticks;
    fw->rig_track = cfg->track; /* a NaN or negative one takes no position limit at all: refused, not open */
    fw->pos_limit = cfg->pos_limit;
    fw->angle_limit = cfg->angle_limit;
    fw->state = BPD_IDLE;
    bpd_parser_init(&fw->parser);
    actuator_zero(fw);
}

void bpd_fw_set_policy(bpd_fw_t *fw, bpd_policy_fn fn, void *ctx, const uint8_t model_hash[8])
{
    fw->policy = fn;
    fw->policy_ctx = ctx;
    if (model_hash) memcpy(fw->model_hash, model_hash, 8);
}

void bpd_fw_set_selftest(bpd_fw_t *fw, const bpd_selftest_t *pairs) { fw->selftest_pairs = pairs; }

void bpd_fw_set_classical(bpd_fw_t *fw, bpd_policy_fn fn, void *ctx, const bpd_selftest_t *pairs,
                          const bpd_handover_region_t *region)
{
    fw->classical = fn;
    fw->classical_ctx = ctx;
    fw->classical_pairs = pairs;
    memset(&fw->region, 0, sizeof fw->region); /* no region: never inside, the classical controller always acts */
    if (region && region->angle_index < fw->obs_dim) fw->region = *region;
}

void bpd_fw_boot(bpd_fw_t *fw, uint16_t boot)
{
    fw->boot = boot;
    run_selftest(fw);
    send_info(fw);
}

void bpd_fw_on_bytes(bpd_fw_t *fw, const uint8_t *data, size_t len)
{
    bpd_parser_feed(&fw->parser, data, len, on_frame, fw);
}

void bpd_fw_external_stop(bpd_fw_t *fw, uint8_t which)
{
    if (fw->state != BPD_RUNNING) return;
    /* an input the board does not name (0, or a bit of no BPD_STOP_*, such as its own mask of the stop pins): an end
     * stop, so that the run's last STATE still says a stop ended it */
    which &= (uint8_t)(BPD_STOP_END | BPD_STOP_EMERGENCY);
    fw->external_stop |= (uint8_t)(which ? which : BPD_STOP_END);
    actuator_zero(fw);
}

int bpd_fw_take_reset(bpd_fw_t *fw, uint32_t *seed)
{
    if (!fw->reset_requested) return 0;
    fw->reset_requested = 0;
    if (seed) *seed = fw->reset_seed;
    return 1;
}

static float absf(float x) { return x < 0.0f ? -x : x; }

/* Observation: positions (encoders converted to units), then velocities, measured or estimated. */
static void build_observation(bpd_fw_t *fw, const float *raw, float *obs)
{
    const bpd_sensor_cfg_t *s = &fw->sensors;
    uint8_t i, np = s->n_pos;
    float dt = (float)fw->period_us * 1e-6f;
    for (i = 0; i < np && i < fw->obs_dim; ++i) {
        obs[i] = s->counts_per_unit[i] > 0.0f ? raw[i] / s->counts_per_unit[i] : raw[i];
    }
    for (i = 0; i < np && np + i < fw->obs_dim; ++i) {
        if (s->measured_vel) {
            obs[np + i] = raw[np + i];
        } else {
            float d = fw->have_prev ? (obs[i] - fw->prev_pos[i]) / dt : 0.0f;
            float wc = 6.2831853f * s->vel_filter_hz[i] * dt;
            float a = s->vel_filter_hz[i] > 0.0f ? wc / (1.0f + wc) : 1.0f;
            fw->vel[i] = fw->have_prev ? fw->vel[i] + a * (d - fw->vel[i]) : 0.0f;
            obs[np + i] = fw->vel[i];
        }
        fw->prev_pos[i] = obs[i];
    }
    fw->have_prev = 1;
}

/* One call of a controller (the policy or the classical one): its return code, an action with a NaN or infinite
 * component counting as an error too (rule 8): the call returned success without computing an action, so the device
 * takes it as a failed call (zero, policy_error, the classical controller's take-back), not as a value to clamp. */
static int run_controller(const bpd_fw_t *fw, bpd_policy_fn fn, void *ctx, const float *obs, float *act)
{
    uint8_t i;
    int rc = fn(ctx, obs, act);
    for (i = 0; rc == 0 && i < fw->act_dim; ++i) {
        if (!finite(act[i])) rc = -1;
    }
    return rc;
}

/* Hand-over (rule 17): inside the region the learned policy acts, on the observation with the region's angle
 * wrapped to [-pi, pi) (the region is about upright, whichever turn the swing-up ended on); outside it, and for
 * the rest of the run once the learned policy failed (an error or a non-finite action: flagged), or when its
 * self-test failed, the classical controller acts (flag bit 8). No hysteresis: the tick that leaves the region is
 * the classical's. Returns the acting controller's return code. */
static int handover(bpd_fw_t *fw, const float *obs, float *act, uint16_t *flags)
{
    const bpd_handover_region_t *r = &fw->region;
    const float pi = 3.14159265f, two_pi = 6.28318531f;
    float a = obs[r->angle_index], learned_obs[BPD_MAX_OBS];
    uint8_t i, inside = (uint8_t)(!fw->handover_latched && fw->selftest != BPD_SELFTEST_FAIL);
    /* the wrap by whole turns, bounded: beyond the rig's angle limit the run has stopped already */
    for (i = 0; i < 64 && a >= pi; ++i) a -= two_pi;
    for (i = 0; i < 64 && a < -pi; ++i) a += two_pi;
    for (i = 0; i < fw->obs_dim; ++i) {
        learned_obs[i] = i == r->angle_index ? a : obs[i];
        if (!(absf(learned_obs[i]) < r->bound[i])) inside = 0; /* a NaN is outside */
    }
    if (inside) {
        if (run_controller(fw, fw->policy, fw->policy_ctx, learned_obs, act) == 0) return 0;
        fw->handover_latched = 1; /* the learned policy failed: the classical controller takes back */
        *flags |= BPD_FLAG_POLICY_ERROR;
        memset(act, 0, (size_t)fw->act_dim * sizeof *act);
    }
    *flags |= BPD_FLAG_CLASSICAL;
    return run_controller(fw, fw->classical, fw->classical_ctx, obs, act);
}

/* In range: |x| <= limit. Beyond it, or not a number at all, the limit stops the run. */
static uint8_t within(float x, float limit) { return (uint8_t)(absf(x) <= limit); }

/* One control tick while RUNNING. Checked in this order: the limits (a stop: IDLE), the watchdog
 * (a trip: FAULT), else the run goes on (device mode runs the policy). Every tick sends one STATE;
 * the one that ends a run has the running flag clear, its reason flag and the zeroed action, and a
 * trip's STATE is followed by the FAULT frame. */
void bpd_fw_tick(bpd_fw_t *fw)
{
    float raw[BPD_MAX_OBS], obs[BPD_MAX_OBS];
    uint8_t body[BPD_MAX_PAYLOAD], i, trip = 0, beyond;
    uint16_t flags = 0;
    uint32_t infer_ns = 0, policy_cycles = 0, jitter = 0, now = fw->hal.now_us(fw->hal.ctx);
    bpd_state_t m;

    if (fw->state != BPD_RUNNING) return;
    if (fw->have_prev) {
        /* jitter (rule 16): this tick's start against its schedule, one period after the previous start */
        uint32_t dt = now - fw->last_tick_us;
        jitter = dt > fw->period_us ? dt - fw->period_us : fw->period_us - dt;
        if (jitter > fw->jitter_max_us) fw->jitter_max_us = jitter;
        if (dt > fw->period_us + fw->period_us / 2) {
            fw->overruns++;
            flags |= BPD_FLAG_OVERRUN;
        }
    }
    fw->last_tick_us = now;
    fw->ticks++;
    memset(raw, 0, sizeof raw);
    fw->hal.read_sensors(fw->hal.ctx, raw, (uint8_t)(fw->sensors.n_pos * (fw->sensors.measured_vel ? 2 : 1)));
    build_observation(fw, raw, obs);

    beyond = (uint8_t)(!within(obs[fw->sensors.pos_index], fw->pos_limit) ||
                       !within(obs[fw->sensors.angle_index], fw->angle_limit));
    if (fw->external_stop || beyond) {
        /* each reason its flag: a limit or an end stop bit 2, the emergency stop bit 9 */
        if (beyond || (fw->external_stop & BPD_STOP_END)) flags |= BPD_FLAG_LIMIT_STOP;
        if (fw->external_stop & BPD_STOP_EMERGENCY) flags |= BPD_FLAG_ESTOP;
        fw->external_stop = 0;
        actuator_zero(fw);
        fw->state = BPD_IDLE;
    } else if (fw->ticks_without_action >= fw->watchdog_ticks) {
        /* watchdog_ticks STATEs in a row without an accepted ACTION: the host is gone */
        fw->watchdog_trips++;
        actuator_zero(fw);
        flags |= BPD_FLAG_WATCHDOG;
        trip = 1;
    } else {
        if (fw->ticks_without_action > 0) flags |= BPD_FLAG_STALE_ACTION;
        fw->ticks_without_action++;
        flags |= BPD_FLAG_RUNNING;
        if ((fw->mode == BPD_MODE_DEVICE && fw->policy) ||
            (fw->mode == BPD_MODE_HANDOVER && fw->policy && fw->classical)) {
            float act[BPD_MAX_ACT];
            uint32_t c0 = fw->hal.cycles(fw->hal.ctx);
            int rc;
            memset(act, 0, sizeof act);
            if (fw->mode == BPD_MODE_DEVICE) {
                rc = run_controller(fw, fw->policy, fw->policy_ctx, obs, act);
            } else {
                rc = handover(fw, obs, act, &flags);
            }
            policy_cycles = fw->hal.cycles(fw->hal.ctx) - c0;
            infer_ns = fw->hal.cycles_per_us ? (uint32_t)((uint64_t)policy_cycles * 1000u / fw->hal.cycles_per_us) : 0u;
            if (rc != 0) { /* the policy failed (an error, a non-finite action): the safe action is zero */
                memset(act, 0, sizeof act);
                flags |= BPD_FLAG_POLICY_ERROR;
            }
            flags |= BPD_FLAG_DEVICE_POLICY | apply_action(fw, act);
        } else {
            flags |= fw->action_flags; /* host mode: the last accepted action is held */
        }
    }

    m.t_us = now;
    m.infer_ns = infer_ns;
    m.rtt_us = fw->rtt_us;
    fw->rtt_us = 0;
    fw->last_state_us = now;
    m.flags = flags;
    m.policy_cycles = policy_cycles;
    m.jitter_us = jitter;
    m.jitter_max_us = fw->jitter_max_us;
    m.n_obs = fw->obs_dim;
    m.n_act = fw->act_dim;
    for (i = 0; i < fw->obs_dim; ++i) m.obs[i] = obs[i];
    for (i = 0; i < fw->act_dim; ++i) m.action[i] = fw->applied[i];
    fw->last_state_seq = fw->tx_seq;
    fw->state_open = (uint8_t)(fw->state == BPD_RUNNING && !trip);
    send(fw, BPD_MSG_STATE, body, bpd_pack_state(&m, body, sizeof body));
    if (trip) enter_fault(fw, BPD_FAULT_WATCHDOG, fw->ticks_without_action);
}
