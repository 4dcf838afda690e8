/*
 * Cortex-M board layer for the bpd firmware core: cycle counter (DWT), a 1 MHz time base from
 * SysTick, the control tick, and the serial receive path. The board-specific parts (UART, sensors,
 * motor driver) are weak stubs below: a port to a real board overrides them in its own file.
 *
 * Build: bpd firmware build --export EXPORT_DIR --target cortex-m4f (the policy is linked in).
 */
#include <stdint.h>
#include <string.h>

#include "bpd_fw.h"
#include "policy_weights.h"

#ifndef BOARD_CPU_HZ
#define BOARD_CPU_HZ 168000000u
#endif
#ifndef BOARD_PERIOD_US
#define BOARD_PERIOD_US 5000u
#endif

#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)

/* ---- board port: override these for a real board ------------------------------------------ */
__attribute__((weak)) void board_init(void) {}
__attribute__((weak)) void board_uart_write(const uint8_t *data, size_t len) { (void)data; (void)len; }
__attribute__((weak)) void board_read_sensors(float *raw, uint8_t n) { memset(raw, 0, (size_t)n * sizeof *raw); }
__attribute__((weak)) void board_write_actuator(const float *u, uint8_t n) { (void)u; (void)n; }
__attribute__((weak)) void board_idle(void) {}

/* ---- receive ring: the UART interrupt calls board_uart_rx_byte, the main loop drains it ------ */
static volatile uint8_t rx_ring[512];
static volatile uint16_t rx_head, rx_tail;

void board_uart_rx_byte(uint8_t b);
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
    if (us_acc >= BOARD_PERIOD_US) {
        us_acc -= BOARD_PERIOD_US;
        tick_due = 1;
    }
}

static uint32_t hal_cycles(void *ctx) { (void)ctx; return DWT_CYCCNT; }
static uint32_t hal_now_us(void *ctx) { (void)ctx; return DWT_CYCCNT / (BOARD_CPU_HZ / 1000000u); }
static void hal_read(void *ctx, float *raw, uint8_t n) { (void)ctx; board_read_sensors(raw, n); }
static void hal_write(void *ctx, const float *u, uint8_t n) { (void)ctx; board_write_actuator(u, n); }
static void hal_serial(void *ctx, const uint8_t *d, size_t n) { (void)ctx; board_uart_write(d, n); }

static float scratch[BPD_SCRATCH_FLOATS];
static int run_policy(void *ctx, const float *obs, float *action)
{
    (void)ctx;
    return bpd_policy_run(&bpd_model, obs, action, scratch) == BPD_OK ? 0 : -1;
}

static bpd_fw_t fw;

int main(void)
{
    bpd_hal_t hal;
    bpd_sensor_cfg_t sensors;
    uint8_t hash[8];
    int i;
    DEMCR |= 1u << 24; /* trace enable, then the cycle counter */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;
    SYST_RVR = BOARD_CPU_HZ / 1000u - 1u;
    SYST_CSR = 7u; /* processor clock, interrupt, enable */
    board_init();
    hal.ctx = 0;
    hal.now_us = hal_now_us;
    hal.cycles = hal_cycles;
    hal.cycles_per_us = BOARD_CPU_HZ / 1000000u;
    hal.read_sensors = hal_read;
    hal.write_actuator = hal_write;
    hal.serial_write = hal_serial;
    memset(&sensors, 0, sizeof sensors);
    sensors.n_pos = (uint8_t)(BPD_OBS_DIM / 2);
    sensors.vel_filter_hz = 50.0f;
    sensors.angle_index = 1;
    for (i = 0; i < 8; ++i) {
        char c0 = bpd_model_hash[2 * i], c1 = bpd_model_hash[2 * i + 1];
        hash[i] = (uint8_t)((c0 <= '9' ? c0 - '0' : c0 - 'a' + 10) * 16 + (c1 <= '9' ? c1 - '0' : c1 - 'a' + 10));
    }
    bpd_fw_init(&fw, &hal, &sensors, BPD_OBS_DIM, BPD_ACT_DIM, BOARD_PERIOD_US);
    bpd_fw_set_policy(&fw, run_policy, 0, hash);
    for (;;) {
        while (rx_tail != rx_head) {
            uint8_t b = rx_ring[rx_tail];
            rx_tail = (uint16_t)((rx_tail + 1u) % sizeof rx_ring);
            bpd_fw_on_bytes(&fw, &b, 1);
        }
        if (tick_due) {
            tick_due = 0;
            bpd_fw_tick(&fw);
        }
        board_idle();
    }
}
