/*
 * libFuzzer harness for the frame parser and the generated message codec (bpd_wire.c, bpd_msgs.c,
 * bpd_msgs_dump.c).
 * The input is a byte stream, fed in chunks whose sizes come from its first byte. Every frame the
 * parser accepts must have a body that fits a payload, must decode or be refused by its unpack
 * function without touching memory it does not own, a body that decodes must pack again to the
 * same bytes (every message in firmware_host/wire/spec.py, through the generated bpd_msg_repack),
 * and the frame must re-encode to one the parser accepts again with the same id, seq and body.
 * Violations abort (a finding).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bpd_msgs.h"
#include "bpd_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int bpd_msg_repack(uint8_t id, const uint8_t *body, size_t len, uint8_t *out, size_t cap); /* bpd_msgs_dump.c */

static const bpd_frame_t *seen;

static void on_again(void *ctx, const bpd_frame_t *f)
{
    (void)ctx;
    if (f->id != seen->id || f->seq != seen->seq || f->body_len != seen->body_len ||
        memcmp(f->body, seen->body, f->body_len) != 0) abort();
    seen = NULL;
}

static void on_frame(void *ctx, const bpd_frame_t *f)
{
    uint8_t frame[BPD_FRAME_MAX], body[BPD_MAX_PAYLOAD];
    bpd_parser_t again;
    size_t n;
    int packed;
    (void)ctx;
    if (f->body_len + 5 > BPD_MAX_PAYLOAD) abort();
    /* every id the codec knows: unpack must stay inside the body, whatever its size; a body it accepts packs to
       the same bytes (fixed-width little-endian fields, counts bounded and checked, no slack: the encoding is
       canonical; f32 travels as its bit pattern, so a NaN's payload and a negative zero come back too) */
    packed = bpd_msg_repack(f->id, f->body, f->body_len, body, sizeof body);
    if (packed >= 0 && ((size_t)packed != f->body_len || memcmp(body, f->body, f->body_len) != 0)) abort();
    n = bpd_frame(f->id, f->seq, f->body, f->body_len, frame);
    if (n == 0 || n > BPD_FRAME_MAX) abort();
    bpd_parser_init(&again);
    seen = f;
    bpd_parser_feed(&again, frame, n, on_again, NULL);
    if (seen != NULL || again.frames_ok != 1) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bpd_parser_t p;
    size_t chunk, i;
    if (size == 0) return 0;
    chunk = (size_t)(data[0] % 16) + 1;
    bpd_parser_init(&p);
    for (i = 1; i < size; i += chunk) bpd_parser_feed(&p, data + i, size - i < chunk ? size - i : chunk, on_frame, NULL);
    return 0;
}
