/*
 * Host HAL: the firmware core as a software device, driven by the simulated rig through a small
 * C API (loaded with ctypes). The rig sets sensor readings and the device time, feeds received
 * bytes, calls the tick, and drains what the device transmits. The rig's configuration comes from
 * the generated bpd_rig_config.h, as on a board. With -DBPD_SIM_POLICY the exported
 * policy (policy.c, policy_weights.c) is linked in and runs on the device in device mode; with
 * -DBPD_HAVE_CLASSICAL too, a classical export for hand-over mode (bpd_handover.h) as well.
 */
#define _POSIX_C_SOURCE 199309L
#include <string.h>
#include <time.h>

#include "bpd_fw.h"
#include "bpd_rig_config.h"

#ifdef BPD_SIM_POLICY
#include "bpd_selftest.h"
#include "policy_weights.h"
static float scratch[BPD_SCRATCH_FLOATS];
static int run_policy(void *ctx, const float *obs, float *action)
{
    (void)ctx;
    return bpd_policy_run(&bpd_model, obs, action, scratch) == BPD_OK ? 0 : -1;
}
#endif

#ifdef BPD_HAVE_CLASSICAL
#include "bpd_handover.h"
static float classical_scratch[1];
static int run_classical(void *ctx, const float *obs, float *action)
{
    (void)ctx;
    return bpd_classical_policy_run(&bpd_classical_model, obs, action, classical_scratch) == BPD_OK ? 0 : -1;
}
#endif

#define TX_CAP 65536

static struct {
    bpd_fw_t fw;
    float sensors[BPD_MAX_OBS];
    float actuator[BPD_MAX_ACT];
    uint32_t now_us;
    uint64_t set_at_ns;         /* wall time at which now_us holds: the last set_time, then its tick */
    uint8_t wall_clock;         /* 1: device time advances with the wall clock from the next tick on */
    uint8_t tx[TX_CAP];
    size_t tx_len;
    uint32_t tx_dropped;
} dev;

static uint64_t wall_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint32_t hal_now(void *ctx)
{
    (void)ctx;
    if (!dev.wall_clock) return dev.now_us;
    return dev.now_us + (uint32_t)((wall_ns() - dev.set_at_ns) / 1000u);
}

static uint32_t hal_cycles(void *ctx)
{
    (void)ctx;
    return (uint32_t)wall_ns(); /* 1 cycle = 1 ns */
}

static void hal_read(void *ctx, float *raw, uint8_t n)
{
    (void)ctx;
    memcpy(raw, dev.sensors, (size_t)n * sizeof(float));
}

static void hal_write(void *ctx, const float *u, uint8_t n)
{
    (void)ctx;
    memcpy(dev.actuator, u, (size_t)n * sizeof(float));
}

static void hal_serial(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    if (dev.tx_len + len > TX_CAP) {
        dev.tx_dropped += (uint32_t)len;
        return;
    }
    memcpy(dev.tx + dev.tx_len, data, len);
    dev.tx_len += len;
}

/* Starts of the device in this process: a restart (the simulated rig's --restart-at) counts on, as a
 * board's counter survives a reset. */
static uint16_t boot_count;

/* Power-on: the rig's configuration from the generated bpd_rig_config.h, then the unasked INFO that
 * announces the start. Returns -2 when the linked policy's sizes differ from the rig's. */
int bpd_sim_init(void);
int bpd_sim_init(void)
{
    static const bpd_fw_config_t rig = BPD_RIG_CONFIG_INIT;
    bpd_hal_t hal;
    uint8_t i;
    memset(&dev, 0, sizeof dev);
    hal.ctx = NULL;
    hal.now_us = hal_now;
    hal.cycles = hal_cycles;
    hal.cycles_per_us = 1000;
    hal.read_sensors = hal_read;
    hal.write_actuator = hal_write;
    hal.serial_write = hal_serial;
    bpd_fw_init(&dev.fw, &hal, &rig);
    (void)i;
#ifdef BPD_SIM_POLICY
    {
        uint8_t h[8];
        for (i = 0; i < 8; ++i) {
            unsigned v = 0;
            char c0 = bpd_model_hash[2 * i], c1 = bpd_model_hash[2 * i + 1];
            v = (unsigned)((c0 <= '9' ? c0 - '0' : c0 - 'a' + 10) * 16 + (c1 <= '9' ? c1 - '0' : c1 - 'a' + 10));
            h[i] = (uint8_t)v;
        }
        if (bpd_model.in_dim != BPD_RIG_OBS_DIM || bpd_model.out_dim != BPD_RIG_ACT_DIM) return -2;
        bpd_fw_set_policy(&dev.fw, run_policy, NULL, h);
        bpd_fw_set_selftest(&dev.fw, BPD_SELFTEST_PAIRS);
#ifdef BPD_HAVE_CLASSICAL
        if (bpd_classical_model.in_dim != BPD_RIG_OBS_DIM || bpd_classical_model.out_dim != BPD_RIG_ACT_DIM) return -2;
        bpd_fw_set_classical(&dev.fw, run_classical, NULL, &bpd_classical_pairs_, &bpd_handover_region_);
#endif
    }
#endif
    bpd_fw_boot(&dev.fw, ++boot_count);
    return 0;
}

void bpd_sim_set_time(uint32_t now_us, uint8_t wall_clock);
void bpd_sim_set_time(uint32_t now_us, uint8_t wall_clock)
{
    dev.now_us = now_us;
    dev.wall_clock = wall_clock;
    dev.set_at_ns = wall_ns();
}

void bpd_sim_set_sensors(const float *raw, uint8_t n);
void bpd_sim_set_sensors(const float *raw, uint8_t n)
{
    memcpy(dev.sensors, raw, (size_t)(n > BPD_MAX_OBS ? BPD_MAX_OBS : n) * sizeof(float));
}

void bpd_sim_rx(const uint8_t *data, size_t len);
void bpd_sim_rx(const uint8_t *data, size_t len) { bpd_fw_on_bytes(&dev.fw, data, len); }

void bpd_sim_tick(void);
void bpd_sim_tick(void)
{
    if (dev.wall_clock) dev.set_at_ns = wall_ns(); /* the time set is the tick's; the clock runs on from it */
    bpd_fw_tick(&dev.fw);
}

/* A stop input of the simulated rig closed (firmware_host/rig/sim.py), as a board's does: `which` BPD_STOP_END,
 * BPD_STOP_EMERGENCY or both. */
void bpd_sim_external_stop(uint8_t which);
void bpd_sim_external_stop(uint8_t which) { bpd_fw_external_stop(&dev.fw, which); }

void bpd_sim_actuator(float *out);
void bpd_sim_actuator(float *out) { memcpy(out, dev.actuator, sizeof dev.actuator); }

size_t bpd_sim_tx(uint8_t *out, size_t cap);
size_t bpd_sim_tx(uint8_t *out, size_t cap)
{
    size_t n = dev.tx_len < cap ? dev.tx_len : cap;
    memcpy(out, dev.tx, n);
    memmove(dev.tx, dev.tx + n, dev.tx_len - n);
    dev.tx_len -= n;
    return n;
}

int bpd_sim_take_reset(uint32_t *seed);
int bpd_sim_take_reset(uint32_t *seed) { return bpd_fw_take_reset(&dev.fw, seed); }

/* The position and angle limits the device runs with (the rig's, or the last CONFIG's): what tells a limit stop from
 * an end stop's (firmware_host/rig/sim_view.py). */
void bpd_sim_limits(float *out2);
void bpd_sim_limits(float *out2)
{
    out2[0] = dev.fw.pos_limit;
    out2[1] = dev.fw.angle_limit;
}

/* state, ticks, overruns, watchdog trips, late actions, fault code, parser bad frames, mode,
 * ticks since the last valid host action */
void bpd_sim_status(uint32_t *out9);
void bpd_sim_status(uint32_t *out9)
{
    const bpd_parser_t *p = &dev.fw.parser;
    out9[0] = (uint32_t)dev.fw.state;
    out9[1] = dev.fw.ticks;
    out9[2] = dev.fw.overruns;
    out9[3] = dev.fw.watchdog_trips;
    out9[4] = dev.fw.late_actions;
    out9[5] = dev.fw.fault_code;
    out9[6] = p->bad_cobs + p->bad_crc + p->bad_length + p->overflows + dev.fw.bad_bodies + dev.fw.unknown_ids;
    out9[7] = dev.fw.mode;
    out9[8] = dev.fw.ticks_without_action;
}
