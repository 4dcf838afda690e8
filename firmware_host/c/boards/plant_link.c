/*
 * Processor-in-the-loop I/O: a simulated plant drives the image over the board's auxiliary port
 * (board_aux_read/board_aux_write), in lockstep. The plant paces the ticks: each control tick is one
 * request carrying the raw sensor readings; the image runs bpd_fw_tick and answers with its state,
 * the actuator and the processor cycles the tick and the policy took. Between ticks the plant polls
 * (it waits until the host has answered the STATE, or a timeout).
 *
 * The device clock is the image's own, SysTick (under QEMU's -icount: instructions, and the host's
 * time while the core sleeps), so it advances within a tick as a board's does. Lockstep runs faster
 * than the period where nothing waits: the clock then skips ahead so that a tick comes one period
 * after the previous one at the earliest, the rule of a lockstep rig in docs/protocol.md. A tick the
 * plant held back for longer (a host slow to answer) comes late on the device clock: an overrun.
 * The host link (board_uart_*) is untouched: the host speaks the bpd protocol as to any board.
 *
 * Requests (plant -> image), little-endian:
 *   'T' raw f32[BPD_RIG_N_RAW]             run one control tick now
 *   'Q'                                    report only
 *   'X'                                    restart: a system reset, as a brown-out or the reset pin
 * Reply (image -> plant), PLANT_REPLY_LEN bytes, one per request and one unasked at start-up
 * (the port is ready: a byte sent before the USART is enabled would be lost):
 *   'R' state u8, mode u8, ticks_without_action u16, reset u8, seed u32, ticks u32 (control ticks
 *   run since power-on), tick_cycles u32, policy_cycles u32, actuator f32[BPD_RIG_ACT_DIM]
 * firmware_host/measure/pil.py is the other end.
 */
#include <string.h>

#include "board.h"
#include "bpd_rig_config.h"

#define SCB_AIRCR (*(volatile uint32_t *)0xE000ED0Cu)
#define AIRCR_SYSRESETREQ 0x05FA0004u /* the key, and the request */

void board_aux_write(const uint8_t *data, size_t len);
int board_aux_read(uint8_t *b);
int board_aux_pending(void);

#define REQ_TICK_LEN (1u + 4u * BPD_RIG_N_RAW)
#define PLANT_REPLY_LEN (1u + 1u + 1u + 2u + 1u + 4u + 4u + 4u + 4u + 4u * BPD_RIG_ACT_DIM)

static uint8_t req[REQ_TICK_LEN];
static size_t req_len;
static uint32_t skipped_us; /* device time the lockstep skipped, added to SysTick's */
static uint32_t last_tick_us;
static uint8_t ticked;
static float sensors[BPD_RIG_N_RAW];
static float actuator[BPD_RIG_ACT_DIM];

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void reply(bpd_fw_t *fw, uint32_t tick_cycles, uint32_t policy_cycles)
{
    uint8_t out[PLANT_REPLY_LEN];
    uint32_t seed = 0, u;
    uint8_t i, reset = (uint8_t)bpd_fw_take_reset(fw, &seed);
    out[0] = 'R';
    out[1] = (uint8_t)fw->state;
    out[2] = fw->mode;
    out[3] = (uint8_t)fw->ticks_without_action;
    out[4] = (uint8_t)(fw->ticks_without_action >> 8);
    out[5] = reset;
    put32(out + 6, seed);
    put32(out + 10, fw->ticks);
    put32(out + 14, tick_cycles);
    put32(out + 18, policy_cycles);
    for (i = 0; i < BPD_RIG_ACT_DIM; ++i) {
        memcpy(&u, &actuator[i], 4);
        put32(out + 22 + 4 * i, u);
    }
    board_aux_write(out, sizeof out);
}

void board_read_sensors(float *raw, uint8_t n)
{
    uint8_t i;
    for (i = 0; i < n; ++i) raw[i] = i < BPD_RIG_N_RAW ? sensors[i] : 0.0f;
}

void board_write_actuator(const float *u, uint8_t n)
{
    uint8_t i;
    for (i = 0; i < n && i < BPD_RIG_ACT_DIM; ++i) actuator[i] = u[i];
}

uint32_t board_now_us(void) { return board_systick_us() + skipped_us; }

/* A tick comes one period after the previous one at the earliest. */
static void clock_to_tick(void)
{
    uint32_t since = board_now_us() - last_tick_us;
    if (ticked && since < BPD_RIG_PERIOD_US) skipped_us += BPD_RIG_PERIOD_US - since;
    last_tick_us = board_now_us();
    ticked = 1;
}

/* The plant paces the ticks: one is due when a whole 'T' request has arrived; 'Q' is answered at
 * once, 'X' restarts the image. */
int board_tick_due(bpd_fw_t *fw)
{
    static uint8_t announced;
    uint8_t b;
    if (!announced) {
        announced = 1;
        reply(fw, 0u, 0u);
    }
    while (board_aux_read(&b)) {
        if (req_len == 0 && b == 'Q') {
            reply(fw, 0u, 0u);
            continue;
        }
        if (req_len == 0 && b == 'X') {
            SCB_AIRCR = AIRCR_SYSRESETREQ;
            for (;;) {
            }
        }
        if (req_len == 0 && b != 'T') continue; /* not a request: resynchronise on the next one */
        req[req_len++] = b;
        if (req_len == REQ_TICK_LEN) {
            uint8_t i;
            uint32_t u;
            req_len = 0;
            for (i = 0; i < BPD_RIG_N_RAW; ++i) {
                u = get32(req + 1 + 4 * i);
                memcpy(&sensors[i], &u, 4);
            }
            clock_to_tick();
            return 1;
        }
    }
    return 0;
}

/* A request's bytes waiting (a tick, a 'Q' or an 'X'): the main loop does not sleep on them. */
int board_tick_pending(void) { return board_aux_pending(); }

void board_after_tick(bpd_fw_t *fw, uint32_t tick_cycles, uint32_t policy_cycles)
{
    reply(fw, tick_cycles, policy_cycles);
}
