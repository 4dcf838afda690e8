/*
 * libFuzzer harness for the frame parser and the generated message codec (bpd_wire.c, bpd_msgs.c).
 * The input is a byte stream, fed in chunks whose sizes come from its first byte. Every frame the
 * parser accepts must have a body that fits a payload, must decode or be refused by its unpack
 * function without touching memory it does not own, and must re-encode to a frame the parser
 * accepts again with the same id, seq and body. Violations abort (a finding).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bpd_msgs.h"
#include "bpd_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
    uint8_t frame[BPD_FRAME_MAX];
    bpd_parser_t again;
    size_t n;
    union {
        bpd_hello_t hello; bpd_info_t info; bpd_config_t config; bpd_reset_t reset; bpd_ack_t ack;
        bpd_state_t state; bpd_action_t action; bpd_fault_t fault; bpd_start_t start; bpd_stop_t stop;
    } m;
    (void)ctx;
    if (f->body_len + 5 > BPD_MAX_PAYLOAD) abort();
    switch (f->id) { /* unpack must stay inside the body, whatever its size */
    case BPD_MSG_HELLO: (void)bpd_unpack_hello(f->body, f->body_len, &m.hello); break;
    case BPD_MSG_INFO: (void)bpd_unpack_info(f->body, f->body_len, &m.info); break;
    case BPD_MSG_CONFIG: (void)bpd_unpack_config(f->body, f->body_len, &m.config); break;
    case BPD_MSG_START: (void)bpd_unpack_start(f->body, f->body_len, &m.start); break;
    case BPD_MSG_STOP: (void)bpd_unpack_stop(f->body, f->body_len, &m.stop); break;
    case BPD_MSG_RESET: (void)bpd_unpack_reset(f->body, f->body_len, &m.reset); break;
    case BPD_MSG_ACK: (void)bpd_unpack_ack(f->body, f->body_len, &m.ack); break;
    case BPD_MSG_STATE:
        if (bpd_unpack_state(f->body, f->body_len, &m.state) == 0) {
            uint8_t body[BPD_MAX_PAYLOAD];
            if (bpd_pack_state(&m.state, body, sizeof body) != f->body_len) abort();
            if (memcmp(body, f->body, f->body_len) != 0) abort();
        }
        break;
    case BPD_MSG_ACTION: (void)bpd_unpack_action(f->body, f->body_len, &m.action); break;
    case BPD_MSG_FAULT: (void)bpd_unpack_fault(f->body, f->body_len, &m.fault); break;
    default: break;
    }
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
