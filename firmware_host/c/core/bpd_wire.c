/* bpd wire framing; see bpd_wire.h. */
#include "bpd_wire.h"

#include <string.h>

uint16_t bpd_crc16(const uint8_t *data, size_t len)
{
    uint16_t crc = 0xFFFFu;
    size_t i;
    int b;
    for (i = 0; i < len; ++i) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (b = 0; b < 8; ++b) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

size_t bpd_cobs_encode(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t code_at = 0, o = 1, i;
    uint8_t code = 1;
    for (i = 0; i < len; ++i) {
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        } else {
            out[o++] = in[i];
            if (++code == 0xFF) {
                out[code_at] = code;
                code_at = o++;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    return o;
}

size_t bpd_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    size_t i = 0, o = 0;
    while (i < len) {
        uint8_t code = in[i++];
        uint8_t k;
        if (code == 0) return 0;
        for (k = 1; k < code; ++k) {
            if (i >= len || in[i] == 0 || o >= cap) return 0;
            out[o++] = in[i++];
        }
        if (code != 0xFF && i < len) {
            if (o >= cap) return 0;
            out[o++] = 0;
        }
    }
    return o;
}

size_t bpd_frame(uint8_t id, uint16_t seq, const uint8_t *body, size_t body_len, uint8_t *out)
{
    uint8_t raw[BPD_MAX_PAYLOAD];
    size_t n;
    uint16_t crc;
    if (body_len + 5 > BPD_MAX_PAYLOAD) return 0;
    raw[0] = id;
    bpd_put_u16(raw + 1, seq);
    if (body_len) memcpy(raw + 3, body, body_len);
    crc = bpd_crc16(raw, body_len + 3);
    bpd_put_u16(raw + 3 + body_len, crc);
    out[0] = 0; /* leading delimiter: garbage before the frame cannot merge into it */
    n = 1 + bpd_cobs_encode(raw, body_len + 5, out + 1);
    out[n++] = 0;
    return n;
}

void bpd_put_u8(uint8_t *p, uint8_t v) { p[0] = v; }
void bpd_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}
void bpd_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}
void bpd_put_f32(uint8_t *p, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    bpd_put_u32(p, u);
}
uint8_t bpd_get_u8(const uint8_t *p) { return p[0]; }
uint16_t bpd_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }
uint32_t bpd_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
float bpd_get_f32(const uint8_t *p)
{
    uint32_t u = bpd_get_u32(p);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

void bpd_parser_init(bpd_parser_t *p) { memset(p, 0, sizeof *p); }

static void finish_frame(bpd_parser_t *p, bpd_frame_cb cb, void *ctx)
{
    uint8_t raw[BPD_MAX_ENCODED];
    size_t n;
    bpd_frame_t f;
    if (p->overflow) {
        p->overflows++;
        return;
    }
    if (p->len == 0) return; /* back-to-back delimiters: idle line, not an error */
    n = bpd_cobs_decode(p->buf, p->len, raw, sizeof raw);
    if (n == 0) {
        p->bad_cobs++;
        return;
    }
    if (n < 5) {
        p->bad_length++;
        return;
    }
    if (bpd_crc16(raw, n - 2) != bpd_get_u16(raw + n - 2)) {
        p->bad_crc++;
        return;
    }
    f.id = raw[0];
    f.seq = bpd_get_u16(raw + 1);
    f.body = raw + 3;
    f.body_len = n - 5;
    p->frames_ok++;
    if (cb) cb(ctx, &f);
}

void bpd_parser_feed(bpd_parser_t *p, const uint8_t *data, size_t len, bpd_frame_cb cb, void *ctx)
{
    size_t i;
    for (i = 0; i < len; ++i) {
        uint8_t c = data[i];
        if (c == 0) {
            finish_frame(p, cb, ctx);
            p->len = 0;
            p->overflow = 0;
        } else if (p->len < sizeof p->buf) {
            p->buf[p->len++] = c;
        } else {
            p->overflow = 1;
        }
    }
}
