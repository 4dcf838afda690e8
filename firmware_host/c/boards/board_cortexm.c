/*
 * Cortex-M board layer for the bpd firmware core: a cycle counter, a 1 ms SysTick time base, the
 * control tick, and the serial receive path. The rig's configuration (period, sizes, encoder counts,
 * filters, limit indices, watchdog and limit defaults) comes from the generated bpd_rig_config.h.
 *
 * The board-specific parts are weak functions below: a port to a real board (board_stm32f4.c)
 * overrides the UART and clock set-up; a processor-in-the-loop build (plant_link.c) overrides
 * sensors, actuator, time and the tick source so a simulated plant drives the image.
 *
 * Build: bpd firmware build EXPORT_DIR --target cortex-m4f --rig RIG [--board BOARD]
 */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "bpd_fw.h"
#include "bpd_rig_config.h"
#include "bpd_handover.h"
#include "bpd_selftest.h"
#include "policy_weights.h"

#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

#define SYSTICK_RELOAD (BOARD_CPU_HZ / 1000u - 1u)

/* ---- receive ring: the UART interrupt (or a poll) calls board_uart_rx_byte, the loop drains it - */
static volatile uint8_t rx_ring[512];
static volatile uint16_t rx_head, rx_tail;

/* Frames the main loop takes from the ring per pass before it looks at the tick. An answer can take longer on
 * the wire than its command (HELLO's INFO is several times the HELLO): a host sending such commands back to back
 * at the line's rate would keep the ring from ever emptying, and a loop draining it whole would never reach the
 * tick, the device's limits and watchdog with it, until the board's watchdog restarted the processor. */
#define BOARD_RX_FRAMES_PER_PASS 1u

void board_uart_rx_byte(uint8_t b)
{
    uint16_t next = (uint16_t)((rx_head + 1u) % sizeof rx_ring);
    if (next != rx_tail) { /* full: drop the byte; the parser resynchronises */
        rx_ring[rx_head] = b;
        rx_head = next;
    }
}

/* ---- time ------------------------------------------------------------------------------------ */
static volatile uint32_t ticks_ms;
static volatile uint8_t tick_due;
static uint32_t us_acc;

void SysTick_Handler(void);
void SysTick_Handler(void)
{
    ticks_ms++;
    us_acc += 1000u;
    if (us_acc >= BPD_RIG_PERIOD_US) {
        us_acc -= BPD_RIG_PERIOD_US;
        tick_due = 1;
    }
}

/* Whole milliseconds and the cycles into the current one, read consistently (again if the
 * millisecond ended between the two reads). */
static uint32_t systick_read(uint32_t *cycles_in_ms)
{
    uint32_t ms, cvr;
    do {
        ms = ticks_ms;
        cvr = SYST_CVR;
    } while (ms != ticks_ms);
    *cycles_in_ms = SYSTICK_RELOAD - cvr;
    return ms;
}

/* Processor cycles from SysTick: milliseconds times cycles per millisecond plus the counter's
 * progress. For cores without DWT (Cortex-M0+) and emulators that do not model it. */
uint32_t board_systick_cycles(void)
{
    uint32_t in_ms, ms = systick_read(&in_ms);
    return ms * (SYSTICK_RELOAD + 1u) + in_ms;
}

/* Microseconds from SysTick. Wraps at 2^32 us as the protocol's clock does (a cycle count divided
 * down would wrap far earlier: at 168 MHz after 25 s). */
uint32_t board_systick_us(void)
{
    uint32_t in_ms, ms = systick_read(&in_ms);
    return ms * 1000u + in_ms / (BOARD_CPU_HZ / 1000000u);
}

/* ---- board port: weak defaults ----------------------------------------------------------------- */
__attribute__((weak)) void board_init(void) {}
__attribute__((weak)) void board_uart_write(const uint8_t *data, size_t len) { (void)data; (void)len; }
__attribute__((weak)) void board_read_sensors(float *raw, uint8_t n) { memset(raw, 0, (size_t)n * sizeof *raw); }
__attribute__((weak)) void board_write_actuator(const float *u, uint8_t n) { (void)u; (void)n; }
__attribute__((weak)) void board_idle(void) {}
__attribute__((weak)) uint32_t board_cycles(void)
{
#if defined(BOARD_CYCLES_FROM_SYSTICK)
    return board_systick_cycles();
#else
    return DWT_CYCCNT;
#endif
}
__attribute__((weak)) uint32_t board_now_us(void) { return board_systick_us(); }
__attribute__((weak)) int board_tick_due(bpd_fw_t *fw)
{
    (void)fw;
    if (!tick_due) return 0;
    tick_due = 0;
    return 1;
}
__attribute__((weak)) int board_tick_pending(void) { return tick_due; }
__attribute__((weak)) void board_after_tick(bpd_fw_t *fw, uint32_t tick_cycles, uint32_t policy_cycles)
{
    (void)fw;
    (void)tick_cycles;
    (void)policy_cycles;
}

/* ---- the HAL on top of the board port ------------------------------------------------------ */
static uint32_t hal_cycles(void *ctx) { (void)ctx; return board_cycles(); }
static uint32_t hal_now_us(void *ctx) { (void)ctx; return board_now_us(); }
static void hal_read(void *ctx, float *raw, uint8_t n) { (void)ctx; board_read_sensors(raw, n); }
static void hal_write(void *ctx, const float *u, uint8_t n) { (void)ctx; board_write_actuator(u, n); }
static void hal_serial(void *ctx, const uint8_t *d, size_t n) { (void)ctx; board_uart_write(d, n); }

static float scratch[BPD_SCRATCH_FLOATS];
static uint32_t policy_cycles; /* the last policy call, for board_after_tick */

static int run_policy(void *ctx, const float *obs, float *action)
{
    uint32_t c0 = board_cycles();
    int rc = bpd_policy_run(&bpd_model, obs, action, scratch) == BPD_OK ? 0 : -1;
    (void)ctx;
    policy_cycles += board_cycles() - c0; /* a hand-over tick may call both controllers */
    return rc;
}

#ifdef BPD_HAVE_CLASSICAL
static float classical_scratch[1];
static int run_classical(void *ctx, const float *obs, float *action)
{
    uint32_t c0 = board_cycles();
    int rc = bpd_classical_policy_run(&bpd_classical_model, obs, action, classical_scratch) == BPD_OK ? 0 : -1;
    (void)ctx;
    policy_cycles += board_cycles() - c0;
    return rc;
}
#endif

static uint8_t hex_nibble(char c) { return (uint8_t)(c <= '9' ? c - '0' : c - 'a' + 10); }

static bpd_fw_t fw;

/* Starts since power-on, in RAM the start-up code does not clear: it survives a reset (the pin, a
 * watchdog, a brown-out that keeps RAM) but not a power cycle. The magic tells it from power-on noise. */
#define BOOT_MAGIC 0xB0075A17u
static uint32_t boot_magic __attribute__((section(".noinit")));
static uint16_t boot_count __attribute__((section(".noinit")));

static uint16_t count_boot(void)
{
    if (boot_magic != BOOT_MAGIC) {
        boot_magic = BOOT_MAGIC;
        boot_count = 0;
    }
    return ++boot_count;
}

int main(void)
{
    static const bpd_fw_config_t rig = BPD_RIG_CONFIG_INIT;
    bpd_hal_t hal;
    uint8_t hash[8];
    int i;
    DEMCR |= 1u << 24; /* trace enable, then the cycle counter */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;
    SYST_RVR = SYSTICK_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* processor clock, interrupt, enable */
    board_init();
    hal.ctx = 0;
    hal.now_us = hal_now_us;
    hal.cycles = hal_cycles;
    hal.cycles_per_us = BOARD_CPU_HZ / 1000000u;
    hal.read_sensors = hal_read;
    hal.write_actuator = hal_write;
    hal.serial_write = hal_serial;
    for (i = 0; i < 8; ++i) hash[i] = (uint8_t)(hex_nibble(bpd_model_hash[2 * i]) * 16 + hex_nibble(bpd_model_hash[2 * i + 1]));
    bpd_fw_init(&fw, &hal, &rig);
    if (bpd_model.in_dim == BPD_RIG_OBS_DIM && bpd_model.out_dim == BPD_RIG_ACT_DIM) {
        bpd_fw_set_policy(&fw, run_policy, 0, hash); /* else: host mode only, INFO says so */
        bpd_fw_set_selftest(&fw, BPD_SELFTEST_PAIRS);
#ifdef BPD_HAVE_CLASSICAL
        if (bpd_classical_model.in_dim == BPD_RIG_OBS_DIM && bpd_classical_model.out_dim == BPD_RIG_ACT_DIM)
            bpd_fw_set_classical(&fw, run_classical, 0, &bpd_classical_pairs_, &bpd_handover_region_);
#endif
    }
    bpd_fw_boot(&fw, count_boot());
    for (;;) {
        uint32_t frames = fw.parser.frames_ok;
        while (rx_tail != rx_head && fw.parser.frames_ok - frames < BOARD_RX_FRAMES_PER_PASS) {
            uint8_t b = rx_ring[rx_tail];
            rx_tail = (uint16_t)((rx_tail + 1u) % sizeof rx_ring);
            bpd_fw_on_bytes(&fw, &b, 1);
        }
        if (board_tick_due(&fw)) {
            uint32_t c0 = board_cycles();
            policy_cycles = 0;
            bpd_fw_tick(&fw);
            board_after_tick(&fw, board_cycles() - c0, policy_cycles);
        }
        /* Sleep only if nothing came since the looks above (frames left over: the next pass at once). A byte's or
         * the tick's interrupt between the last look and the WFI would be taken before it and leave the loop asleep
         * until the next interrupt, SysTick's up to 1 ms on: the tick that late. Masked, the look and the WFI are
         * one step: an interrupt pending wakes the WFI even while masked, and is taken once unmasked. */
        __asm volatile("cpsid i" ::: "memory");
        if (rx_tail == rx_head && !board_tick_pending()) board_idle();
        __asm volatile("cpsie i" ::: "memory");
    }
}
