/* generated - do not edit. Source: firmware_host/wire/spec.py;
 * regenerate with: python -m firmware_host.wire.spec */
#include "bpd_msgs.h"
#include "bpd_wire.h"
size_t bpd_pack_hello(const bpd_hello_t *m, uint8_t *body, size_t cap)
{
    size_t n = 0;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->protocol); n += 1;
    (void)cap;
    return n;
}

int bpd_unpack_hello(const uint8_t *body, size_t len, bpd_hello_t *m)
{
    size_t n = 0;
    if (n + 1 > len) return -1;
    m->protocol = bpd_get_u8(body + n); n += 1;
    return n == len ? 0 : -1;
}

size_t bpd_pack_info(const bpd_info_t *m, uint8_t *body, size_t cap)
{
    size_t n = 0;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->protocol); n += 1;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->fw_major); n += 1;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->fw_minor); n += 1;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->obs_dim); n += 1;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->act_dim); n += 1;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->caps); n += 1;
    if (n + 4 > cap) return 0;
    bpd_put_u32(body + n, m->period_us); n += 4;
    {
        size_t i;
        if (8 > 8 || n + (size_t)8 * 1 > cap) return 0;
        for (i = 0; i < (size_t)8; ++i) { bpd_put_u8(body + n, m->model_hash[i]); n += 1; }
    }
    if (n + 2 > cap) return 0;
    bpd_put_u16(body + n, m->boot); n += 2;
    if (n + 4 > cap) return 0;
    bpd_put_u32(body + n, m->rx_dropped); n += 4;
    if (n + 4 > cap) return 0;
    bpd_put_u32(body + n, m->actions_dropped); n += 4;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->selftest); n += 1;
    if (n + 4 > cap) return 0;
    bpd_put_u32(body + n, m->cycle_hz); n += 4;
    (void)cap;
    return n;
}

int bpd_unpack_info(const uint8_t *body, size_t len, bpd_info_t *m)
{
    size_t n = 0;
    if (n + 1 > len) return -1;
    m->protocol = bpd_get_u8(body + n); n += 1;
    if (n + 1 > len) return -1;
    m->fw_major = bpd_get_u8(body + n); n += 1;
    if (n + 1 > len) return -1;
    m->fw_minor = bpd_get_u8(body + n); n += 1;
    if (n + 1 > len) return -1;
    m->obs_dim = bpd_get_u8(body + n); n += 1;
    if (n + 1 > len) return -1;
    m->act_dim = bpd_get_u8(body + n); n += 1;
    if (n + 1 > len) return -1;
    m->caps = bpd_get_u8(body + n); n += 1;
    if (n + 4 > len) return -1;
    m->period_us = bpd_get_u32(body + n); n += 4;
    {
        size_t i;
        if (8 > 8 || n + (size_t)8 * 1 > len) return -1;
        for (i = 0; i < (size_t)8; ++i) { m->model_hash[i] = bpd_get_u8(body + n); n += 1; }
    }
    if (n + 2 > len) return -1;
    m->boot = bpd_get_u16(body + n); n += 2;
    if (n + 4 > len) return -1;
    m->rx_dropped = bpd_get_u32(body + n); n += 4;
    if (n + 4 > len) return -1;
    m->actions_dropped = bpd_get_u32(body + n); n += 4;
    if (n + 1 > len) return -1;
    m->selftest = bpd_get_u8(body + n); n += 1;
    if (n + 4 > len) return -1;
    m->cycle_hz = bpd_get_u32(body + n); n += 4;
    return n == len ? 0 : -1;
}

size_t bpd_pack_config(const bpd_config_t *m, uint8_t *body, size_t cap)
{
    size_t n = 0;
    if (n + 4 > cap) return 0;
    bpd_put_u32(body + n, m->period_us); n += 4;
    if (n + 2 > cap) return 0;
    bpd_put_u16(body + n, m->watchdog_ticks); n += 2;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->mode); n += 1;
    if (n + 4 > cap) return 0;
    bpd_put_f32(body + n, m->action_limit); n += 4;
    if (n + 4 > cap) return 0;
    bpd_put_f32(body + n, m->pos_limit); n += 4;
    if (n + 4 > cap) return 0;
    bpd_put_f32(body + n, m->angle_limit); n += 4;
    (void)cap;
    return n;
}

int bpd_unpack_config(const uint8_t *body, size_t len, bpd_config_t *m)
{
    size_t n = 0;
    if (n + 4 > len) return -1;
    m->period_us = bpd_get_u32(body + n); n += 4;
    if (n + 2 > len) return -1;
    m->watchdog_ticks = bpd_get_u16(body + n); n += 2;
    if (n + 1 > len) return -1;
    m->mode = bpd_get_u8(body + n); n += 1;
    if (n + 4 > len) return -1;
    m->action_limit = bpd_get_f32(body + n); n += 4;
    if (n + 4 > len) return -1;
    m->pos_limit = bpd_get_f32(body + n); n += 4;
    if (n + 4 > len) return -1;
    m->angle_limit = bpd_get_f32(body + n); n += 4;
    return n == len ? 0 : -1;
}

size_t bpd_pack_start(const bpd_start_t *m, uint8_t *body, size_t cap)
{
    size_t n = 0;
    (void)m; (void)body;
    (void)cap;
    return n;
}

int bpd_unpack_start(const uint8_t *body, size_t len, bpd_start_t *m)
{
    size_t n = 0;
    (void)body; (void)m;
    return n == len ? 0 : -1;
}

size_t bpd_pack_stop(const bpd_stop_t *m, uint8_t *body, size_t cap)
{
    size_t n = 0;
    (void)m; (void)body;
    (void)cap;
    return n;
}

int bpd_unpack_stop(const uint8_t *body, size_t len, bpd_stop_t *m)
{
    size_t n = 0;
    (void)body; (void)m;
    return n == len ? 0 : -1;
}

size_t bpd_pack_reset(const bpd_reset_t *m, uint8_t *body, size_t cap)
{
    size_t n = 0;
    if (n + 4 > cap) return 0;
    bpd_put_u32(body + n, m->seed); n += 4;
    (void)cap;
    return n;
}

int bpd_unpack_reset(const uint8_t *body, size_t len, bpd_reset_t *m)
{
    size_t n = 0;
    if (n + 4 > len) return -1;
    m->seed = bpd_get_u32(body + n); n += 4;
    return n == len ? 0 : -1;
}

size_t bpd_pack_ack(const bpd_ack_t *m, uint8_t *body, size_t cap)
{
    size_t n = 0;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->of); n += 1;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->status); n += 1;
    if (n + 2 > cap) return 0;
    bpd_put_u16(body + n, m->echo_seq); n += 2;
    (void)cap;
    return n;
}

int bpd_unpack_ack(const uint8_t *body, size_t len, bpd_ack_t *m)
{
    size_t n = 0;
    if (n + 1 > len) return -1;
    m->of = bpd_get_u8(body + n); n += 1;
    if (n + 1 > len) return -1;
    m->status = bpd_get_u8(body + n); n += 1;
    if (n + 2 > len) return -1;
    m->echo_seq = bpd_get_u16(body + n); n += 2;
    return n == len ? 0 : -1;
}

size_t bpd_pack_state(const bpd_state_t *m, uint8_t *body, size_t cap)
{
    size_t n = 0;
    if (n + 4 > cap) return 0;
    bpd_put_u32(body + n, m->t_us); n += 4;
    if (n + 4 > cap) return 0;
    bpd_put_u32(body + n, m->infer_ns); n += 4;
    if (n + 4 > cap) return 0;
    bpd_put_u32(body + n, m->rtt_us); n += 4;
    if (n + 2 > cap) return 0;
    bpd_put_u16(body + n, m->flags); n += 2;
    if (n + 4 > cap) return 0;
    bpd_put_u32(body + n, m->policy_cycles); n += 4;
    if (n + 4 > cap) return 0;
    bpd_put_u32(body + n, m->jitter_us); n += 4;
    if (n + 4 > cap) return 0;
    bpd_put_u32(body + n, m->jitter_max_us); n += 4;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->n_obs); n += 1;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->n_act); n += 1;
    {
        size_t i;
        if (m->n_obs > 16 || n + (size_t)m->n_obs * 4 > cap) return 0;
        for (i = 0; i < (size_t)m->n_obs; ++i) { bpd_put_f32(body + n, m->obs[i]); n += 4; }
    }
    {
        size_t i;
        if (m->n_act > 4 || n + (size_t)m->n_act * 4 > cap) return 0;
        for (i = 0; i < (size_t)m->n_act; ++i) { bpd_put_f32(body + n, m->action[i]); n += 4; }
    }
    (void)cap;
    return n;
}

int bpd_unpack_state(const uint8_t *body, size_t len, bpd_state_t *m)
{
    size_t n = 0;
    if (n + 4 > len) return -1;
    m->t_us = bpd_get_u32(body + n); n += 4;
    if (n + 4 > len) return -1;
    m->infer_ns = bpd_get_u32(body + n); n += 4;
    if (n + 4 > len) return -1;
    m->rtt_us = bpd_get_u32(body + n); n += 4;
    if (n + 2 > len) return -1;
    m->flags = bpd_get_u16(body + n); n += 2;
    if (n + 4 > len) return -1;
    m->policy_cycles = bpd_get_u32(body + n); n += 4;
    if (n + 4 > len) return -1;
    m->jitter_us = bpd_get_u32(body + n); n += 4;
    if (n + 4 > len) return -1;
    m->jitter_max_us = bpd_get_u32(body + n); n += 4;
    if (n + 1 > len) return -1;
    m->n_obs = bpd_get_u8(body + n); n += 1;
    if (n + 1 > len) return -1;
    m->n_act = bpd_get_u8(body + n); n += 1;
    {
        size_t i;
        if (m->n_obs > 16 || n + (size_t)m->n_obs * 4 > len) return -1;
        for (i = 0; i < (size_t)m->n_obs; ++i) { m->obs[i] = bpd_get_f32(body + n); n += 4; }
    }
    {
        size_t i;
        if (m->n_act > 4 || n + (size_t)m->n_act * 4 > len) return -1;
        for (i = 0; i < (size_t)m->n_act; ++i) { m->action[i] = bpd_get_f32(body + n); n += 4; }
    }
    return n == len ? 0 : -1;
}

size_t bpd_pack_action(const bpd_action_t *m, uint8_t *body, size_t cap)
{
    size_t n = 0;
    if (n + 2 > cap) return 0;
    bpd_put_u16(body + n, m->echo_seq); n += 2;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->n_act); n += 1;
    {
        size_t i;
        if (m->n_act > 4 || n + (size_t)m->n_act * 4 > cap) return 0;
        for (i = 0; i < (size_t)m->n_act; ++i) { bpd_put_f32(body + n, m->action[i]); n += 4; }
    }
    (void)cap;
    return n;
}

int bpd_unpack_action(const uint8_t *body, size_t len, bpd_action_t *m)
{
    size_t n = 0;
    if (n + 2 > len) return -1;
    m->echo_seq = bpd_get_u16(body + n); n += 2;
    if (n + 1 > len) return -1;
    m->n_act = bpd_get_u8(body + n); n += 1;
    {
        size_t i;
        if (m->n_act > 4 || n + (size_t)m->n_act * 4 > len) return -1;
        for (i = 0; i < (size_t)m->n_act; ++i) { m->action[i] = bpd_get_f32(body + n); n += 4; }
    }
    return n == len ? 0 : -1;
}

size_t bpd_pack_fault(const bpd_fault_t *m, uint8_t *body, size_t cap)
{
    size_t n = 0;
    if (n + 1 > cap) return 0;
    bpd_put_u8(body + n, m->code); n += 1;
    if (n + 4 > cap) return 0;
    bpd_put_u32(body + n, m->detail); n += 4;
    (void)cap;
    return n;
}

int bpd_unpack_fault(const uint8_t *body, size_t len, bpd_fault_t *m)
{
    size_t n = 0;
    if (n + 1 > len) return -1;
    m->code = bpd_get_u8(body + n); n += 1;
    if (n + 4 > len) return -1;
    m->detail = bpd_get_u32(body + n); n += 4;
    return n == len ? 0 : -1;
}

