/*
 * bpd wire framing: COBS with a 0x00 delimiter, CRC-16/CCITT-FALSE, little-endian fields.
 * Frame = 0x00 COBS(id u8 | seq u16 | body | crc16 u16) 0x00: senders delimit both ends, so
 * line noise before a frame cannot merge into it; empty frames are idle. See docs/protocol.md.
 * C99, no malloc: the parser works in a caller-owned struct.
 */
#ifndef BPD_WIRE_H
#define BPD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "bpd_msgs.h"

#define BPD_FRAME_MAX BPD_MAX_FRAME /* encoded payload (at most BPD_MAX_ENCODED) + two delimiters */

uint16_t bpd_crc16(const uint8_t *data, size_t len);
size_t bpd_cobs_encode(const uint8_t *in, size_t len, uint8_t *out);          /* out: len + 1 bytes */
size_t bpd_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap); /* 0 on error */

/* Build a whole frame (with delimiter) into out[BPD_FRAME_MAX]; returns its length or 0. */
size_t bpd_frame(uint8_t id, uint16_t seq, const uint8_t *body, size_t body_len, uint8_t *out);

void bpd_put_u8(uint8_t *p, uint8_t v);
void bpd_put_u16(uint8_t *p, uint16_t v);
void bpd_put_u32(uint8_t *p, uint32_t v);
void bpd_put_f32(uint8_t *p, float v);
uint8_t bpd_get_u8(const uint8_t *p);
uint16_t bpd_get_u16(const uint8_t *p);
uint32_t bpd_get_u32(const uint8_t *p);
float bpd_get_f32(const uint8_t *p);

typedef struct {
    uint8_t buf[BPD_MAX_ENCODED]; /* bytes between delimiters; more is an overflow */
    size_t len;
    uint8_t overflow;
    uint32_t frames_ok;
    uint32_t bad_cobs;
    uint32_t bad_crc;
    uint32_t bad_length;
    uint32_t overflows;
} bpd_parser_t;

typedef struct {
    uint8_t id;
    uint16_t seq;
    const uint8_t *body;
    size_t body_len;
} bpd_frame_t;

typedef void (*bpd_frame_cb)(void *ctx, const bpd_frame_t *frame);

void bpd_parser_init(bpd_parser_t *p);
/* Feed any number of bytes; cb runs once per valid frame. Bad frames are counted and dropped;
 * parsing resynchronises at the next 0x00. */
void bpd_parser_feed(bpd_parser_t *p, const uint8_t *data, size_t len, bpd_frame_cb cb, void *ctx);

#endif /* BPD_WIRE_H */
