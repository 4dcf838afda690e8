/*
 * Host test harness for the C codec (not firmware).
 *   wire_selftest frames        stdin: one hex frame per line. For each valid frame prints
 *                               "<dump>\n<hex of the frame re-packed from the decoded struct>\n".
 *   wire_selftest stream CHUNK  stdin: raw bytes fed in CHUNK-byte pieces (0: all at once). Prints
 *                               "id seq bodyhex" per valid frame, then the parser's counters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpd_msgs.h"
#include "bpd_wire.h"

int bpd_msg_dump(uint8_t id, uint16_t seq, const uint8_t *body, size_t len, char *out, size_t cap);
int bpd_msg_repack(uint8_t id, const uint8_t *body, size_t len, uint8_t *out, size_t cap);

static void print_hex(const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) printf("%02x", p[i]);
    printf("\n");
}

static void on_golden(void *ctx, const bpd_frame_t *f)
{
    char text[2048];
    uint8_t body[BPD_MAX_PAYLOAD], frame[BPD_FRAME_MAX];
    size_t fl;
    int n;
    (void)ctx;
    if (bpd_msg_dump(f->id, f->seq, f->body, f->body_len, text, sizeof text) < 0) {
        printf("undecodable\n\n");
        return;
    }
    printf("%s\n", text);
    n = bpd_msg_repack(f->id, f->body, f->body_len, body, sizeof body);
    fl = bpd_frame(f->id, f->seq, body, n < 0 ? 0 : (size_t)n, frame);
    print_hex(frame, fl);
}

static void on_stream(void *ctx, const bpd_frame_t *f)
{
    (void)ctx;
    printf("%u %u ", (unsigned)f->id, (unsigned)f->seq);
    print_hex(f->body, f->body_len);
}

int main(int argc, char **argv)
{
    static uint8_t data[1 << 24];
    bpd_parser_t p;
    bpd_parser_init(&p);
    if (argc >= 2 && strcmp(argv[1], "frames") == 0) {
        char line[4096];
        while (fgets(line, sizeof line, stdin)) {
            uint8_t bytes[1024];
            size_t n = 0;
            char *s = line;
            while (s[0] && s[1] && s[0] != '\n' && n < sizeof bytes) {
                unsigned v;
                if (sscanf(s, "%2x", &v) != 1) break;
                bytes[n++] = (uint8_t)v;
                s += 2;
            }
            bpd_parser_feed(&p, bytes, n, on_golden, NULL);
        }
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "stream") == 0) {
        size_t chunk = (size_t)strtoul(argv[2], NULL, 10), len = fread(data, 1, sizeof data, stdin), i;
        if (chunk == 0) chunk = len ? len : 1;
        for (i = 0; i < len; i += chunk) {
            bpd_parser_feed(&p, data + i, (len - i < chunk) ? len - i : chunk, on_stream, NULL);
        }
        printf("counters %lu %lu %lu %lu %lu\n", (unsigned long)p.frames_ok, (unsigned long)p.bad_cobs,
               (unsigned long)p.bad_crc, (unsigned long)p.bad_length, (unsigned long)p.overflows);
        return 0;
    }
    fprintf(stderr, "usage: wire_selftest frames | stream CHUNK\n");
    return 2;
}
