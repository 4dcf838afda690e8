/* Board-independent driver logic; see bpd_drivers.h. */
#include "bpd_drivers.h"

void bpd_encoder_init(bpd_encoder_t *e, uint16_t raw)
{
    e->last = raw;
    e->count = 0;
}

int32_t bpd_encoder_update(bpd_encoder_t *e, uint16_t raw)
{
    /* modulo 2^16, then read as signed: a step of -1 across 0 is 0xFFFF - 0x0000 = -1 */
    uint16_t diff = (uint16_t)(raw - e->last);
    int32_t step = diff < 0x8000u ? (int32_t)diff : (int32_t)diff - 65536;
    e->last = raw;
    e->count = (int32_t)(uint32_t)((uint32_t)e->count + (uint32_t)step); /* wraps at 2^32, never overflows */
    return step;
}

float bpd_encoder_counts(const bpd_encoder_t *e, uint8_t invert)
{
    float c = (float)e->count;
    return invert ? -c : c;
}

float bpd_encoder_position(const bpd_encoder_t *e, float counts_per_unit, uint8_t invert)
{
    return counts_per_unit > 0.0f ? bpd_encoder_counts(e, invert) / counts_per_unit : 0.0f;
}

/* Neither NaN nor infinite. */
static uint8_t finite(float v) { return (uint8_t)(v == v && v - v == 0.0f); }

bpd_pwm_t bpd_pwm_from_command(float u, float action_limit, float full_scale, uint16_t top, uint8_t invert,
                               uint8_t blocked)
{
    bpd_pwm_t out = {0u, 0u};
    float mag, d;
    if (!finite(u) || !finite(action_limit) || action_limit <= 0.0f || !finite(full_scale) || full_scale <= 0.0f ||
        (u > 0.0f && (blocked & BPD_BLOCK_POSITIVE)) || (u < 0.0f && (blocked & BPD_BLOCK_NEGATIVE))) {
        return out;
    }
    if (u > action_limit) u = action_limit;
    if (u < -action_limit) u = -action_limit;
    mag = u < 0.0f ? -u : u;
    d = mag / full_scale * (float)top + 0.5f; /* rounded to the nearest compare step */
    out.duty = d >= (float)top ? top : (uint16_t)d;
    out.reverse = (uint8_t)((u < 0.0f) != (invert != 0u) && out.duty > 0u);
    return out;
}

void bpd_stops_init(bpd_stops_t *s)
{
    s->active = 0;
    s->tripped = 0;
}

uint8_t bpd_stops_update(bpd_stops_t *s, uint8_t active)
{
    uint8_t newly = (uint8_t)(active & (uint8_t)~s->active);
    s->tripped = (uint8_t)(s->tripped | newly);
    s->active = active;
    return newly;
}

uint8_t bpd_stops_take(bpd_stops_t *s)
{
    uint8_t t = s->tripped;
    s->tripped = 0;
    return t;
}

uint8_t bpd_stops_ending(bpd_stops_t *s, uint8_t pos_mask, uint8_t neg_mask)
{
    return (uint8_t)(bpd_stops_take(s) | (s->active & pos_mask & neg_mask));
}

uint8_t bpd_stops_blocked(const bpd_stops_t *s, uint8_t pos_mask, uint8_t neg_mask)
{
    if (s->tripped) return (uint8_t)(BPD_BLOCK_POSITIVE | BPD_BLOCK_NEGATIVE); /* until the tick ends the run */
    return (uint8_t)(((s->active & pos_mask) ? BPD_BLOCK_POSITIVE : 0u) | ((s->active & neg_mask) ? BPD_BLOCK_NEGATIVE : 0u));
}
