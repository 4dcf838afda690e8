/* generated - do not edit. Source: firmware_host/wire/spec.py (host tests only) */
#include <stdio.h>
#include "bpd_msgs.h"

/* Returns the number of characters written, or -1 for an unknown id or a bad body. */
int bpd_msg_dump(uint8_t id, uint16_t seq, const uint8_t *body, size_t len, char *out, size_t cap)
{
    int n = 0;
    size_t i;
    (void)i;
    switch (id) {
    case 0x01u: {
        bpd_hello_t m;
        if (bpd_unpack_hello(body, len, &m) != 0) return -1;
        n += snprintf(out + n, cap - (size_t)n, "hello %u", (unsigned)seq);
        n += snprintf(out + n, cap - (size_t)n, " protocol=%lu", (unsigned long)m.protocol);
        return n;
    }
    case 0x02u: {
        bpd_info_t m;
        if (bpd_unpack_info(body, len, &m) != 0) return -1;
        n += snprintf(out + n, cap - (size_t)n, "info %u", (unsigned)seq);
        n += snprintf(out + n, cap - (size_t)n, " protocol=%lu", (unsigned long)m.protocol);
        n += snprintf(out + n, cap - (size_t)n, " fw_major=%lu", (unsigned long)m.fw_major);
        n += snprintf(out + n, cap - (size_t)n, " fw_minor=%lu", (unsigned long)m.fw_minor);
        n += snprintf(out + n, cap - (size_t)n, " obs_dim=%lu", (unsigned long)m.obs_dim);
        n += snprintf(out + n, cap - (size_t)n, " act_dim=%lu", (unsigned long)m.act_dim);
        n += snprintf(out + n, cap - (size_t)n, " caps=%lu", (unsigned long)m.caps);
        n += snprintf(out + n, cap - (size_t)n, " period_us=%lu", (unsigned long)m.period_us);
        n += snprintf(out + n, cap - (size_t)n, " model_hash=");
        for (i = 0; i < (size_t)8; ++i) n += snprintf(out + n, cap - (size_t)n, "%s%lu", i ? "," : "", (unsigned long)m.model_hash[i]);
        n += snprintf(out + n, cap - (size_t)n, " boot=%lu", (unsigned long)m.boot);
        n += snprintf(out + n, cap - (size_t)n, " rx_dropped=%lu", (unsigned long)m.rx_dropped);
        n += snprintf(out + n, cap - (size_t)n, " actions_dropped=%lu", (unsigned long)m.actions_dropped);
        n += snprintf(out + n, cap - (size_t)n, " selftest=%lu", (unsigned long)m.selftest);
        n += snprintf(out + n, cap - (size_t)n, " cycle_hz=%lu", (unsigned long)m.cycle_hz);
        return n;
    }
    case 0x03u: {
        bpd_config_t m;
        if (bpd_unpack_config(body, len, &m) != 0) return -1;
        n += snprintf(out + n, cap - (size_t)n, "config %u", (unsigned)seq);
        n += snprintf(out + n, cap - (size_t)n, " period_us=%lu", (unsigned long)m.period_us);
        n += snprintf(out + n, cap - (size_t)n, " watchdog_ticks=%lu", (unsigned long)m.watchdog_ticks);
        n += snprintf(out + n, cap - (size_t)n, " mode=%lu", (unsigned long)m.mode);
        n += snprintf(out + n, cap - (size_t)n, " action_limit=%.9g", (double)m.action_limit);
        n += snprintf(out + n, cap - (size_t)n, " pos_limit=%.9g", (double)m.pos_limit);
        n += snprintf(out + n, cap - (size_t)n, " angle_limit=%.9g", (double)m.angle_limit);
        return n;
    }
    case 0x04u: {
        bpd_start_t m;
        if (bpd_unpack_start(body, len, &m) != 0) return -1;
        n += snprintf(out + n, cap - (size_t)n, "start %u", (unsigned)seq);
        return n;
    }
    case 0x05u: {
        bpd_stop_t m;
        if (bpd_unpack_stop(body, len, &m) != 0) return -1;
        n += snprintf(out + n, cap - (size_t)n, "stop %u", (unsigned)seq);
        return n;
    }
    case 0x06u: {
        bpd_reset_t m;
        if (bpd_unpack_reset(body, len, &m) != 0) return -1;
        n += snprintf(out + n, cap - (size_t)n, "reset %u", (unsigned)seq);
        n += snprintf(out + n, cap - (size_t)n, " seed=%lu", (unsigned long)m.seed);
        return n;
    }
    case 0x07u: {
        bpd_ack_t m;
        if (bpd_unpack_ack(body, len, &m) != 0) return -1;
        n += snprintf(out + n, cap - (size_t)n, "ack %u", (unsigned)seq);
        n += snprintf(out + n, cap - (size_t)n, " of=%lu", (unsigned long)m.of);
        n += snprintf(out + n, cap - (size_t)n, " status=%lu", (unsigned long)m.status);
        n += snprintf(out + n, cap - (size_t)n, " echo_seq=%lu", (unsigned long)m.echo_seq);
        return n;
    }
    case 0x10u: {
        bpd_state_t m;
        if (bpd_unpack_state(body, len, &m) != 0) return -1;
        n += snprintf(out + n, cap - (size_t)n, "state %u", (unsigned)seq);
        n += snprintf(out + n, cap - (size_t)n, " t_us=%lu", (unsigned long)m.t_us);
        n += snprintf(out + n, cap - (size_t)n, " infer_ns=%lu", (unsigned long)m.infer_ns);
        n += snprintf(out + n, cap - (size_t)n, " rtt_us=%lu", (unsigned long)m.rtt_us);
        n += snprintf(out + n, cap - (size_t)n, " flags=%lu", (unsigned long)m.flags);
        n += snprintf(out + n, cap - (size_t)n, " policy_cycles=%lu", (unsigned long)m.policy_cycles);
        n += snprintf(out + n, cap - (size_t)n, " jitter_us=%lu", (unsigned long)m.jitter_us);
        n += snprintf(out + n, cap - (size_t)n, " jitter_max_us=%lu", (unsigned long)m.jitter_max_us);
        n += snprintf(out + n, cap - (size_t)n, " n_obs=%lu", (unsigned long)m.n_obs);
        n += snprintf(out + n, cap - (size_t)n, " n_act=%lu", (unsigned long)m.n_act);
        n += snprintf(out + n, cap - (size_t)n, " obs=");
        for (i = 0; i < (size_t)m.n_obs; ++i) n += snprintf(out + n, cap - (size_t)n, "%s%.9g", i ? "," : "", (double)m.obs[i]);
        n += snprintf(out + n, cap - (size_t)n, " action=");
        for (i = 0; i < (size_t)m.n_act; ++i) n += snprintf(out + n, cap - (size_t)n, "%s%.9g", i ? "," : "", (double)m.action[i]);
        return n;
    }
    case 0x11u: {
        bpd_action_t m;
        if (bpd_unpack_action(body, len, &m) != 0) return -1;
        n += snprintf(out + n, cap - (size_t)n, "action %u", (unsigned)seq);
        n += snprintf(out + n, cap - (size_t)n, " echo_seq=%lu", (unsigned long)m.echo_seq);
        n += snprintf(out + n, cap - (size_t)n, " n_act=%lu", (unsigned long)m.n_act);
        n += snprintf(out + n, cap - (size_t)n, " action=");
        for (i = 0; i < (size_t)m.n_act; ++i) n += snprintf(out + n, cap - (size_t)n, "%s%.9g", i ? "," : "", (double)m.action[i]);
        return n;
    }
    case 0x12u: {
        bpd_fault_t m;
        if (bpd_unpack_fault(body, len, &m) != 0) return -1;
        n += snprintf(out + n, cap - (size_t)n, "fault %u", (unsigned)seq);
        n += snprintf(out + n, cap - (size_t)n, " code=%lu", (unsigned long)m.code);
        n += snprintf(out + n, cap - (size_t)n, " detail=%lu", (unsigned long)m.detail);
        return n;
    }
    default:
        return -1;
    }
}

/* Unpacks a body and packs the message again (the codec's round trip, for wire_selftest and the parser's
 * fuzz harness): the packed length, or -1 for an unknown id or a body its unpack refuses. */
int bpd_msg_repack(uint8_t id, const uint8_t *body, size_t len, uint8_t *out, size_t cap)
{
    switch (id) {
    case 0x01u: {
        bpd_hello_t m;
        if (bpd_unpack_hello(body, len, &m) != 0) return -1;
        return (int)bpd_pack_hello(&m, out, cap);
    }
    case 0x02u: {
        bpd_info_t m;
        if (bpd_unpack_info(body, len, &m) != 0) return -1;
        return (int)bpd_pack_info(&m, out, cap);
    }
    case 0x03u: {
        bpd_config_t m;
        if (bpd_unpack_config(body, len, &m) != 0) return -1;
        return (int)bpd_pack_config(&m, out, cap);
    }
    case 0x04u: {
        bpd_start_t m;
        if (bpd_unpack_start(body, len, &m) != 0) return -1;
        return (int)bpd_pack_start(&m, out, cap);
    }
    case 0x05u: {
        bpd_stop_t m;
        if (bpd_unpack_stop(body, len, &m) != 0) return -1;
        return (int)bpd_pack_stop(&m, out, cap);
    }
    case 0x06u: {
        bpd_reset_t m;
        if (bpd_unpack_reset(body, len, &m) != 0) return -1;
        return (int)bpd_pack_reset(&m, out, cap);
    }
    case 0x07u: {
        bpd_ack_t m;
        if (bpd_unpack_ack(body, len, &m) != 0) return -1;
        return (int)bpd_pack_ack(&m, out, cap);
    }
    case 0x10u: {
        bpd_state_t m;
        if (bpd_unpack_state(body, len, &m) != 0) return -1;
        return (int)bpd_pack_state(&m, out, cap);
    }
    case 0x11u: {
        bpd_action_t m;
        if (bpd_unpack_action(body, len, &m) != 0) return -1;
        return (int)bpd_pack_action(&m, out, cap);
    }
    case 0x12u: {
        bpd_fault_t m;
        if (bpd_unpack_fault(body, len, &m) != 0) return -1;
        return (int)bpd_pack_fault(&m, out, cap);
    }
    default:
        return -1;
    }
}
