/*
 * Hardware-abstraction layer the firmware core runs on. A board provides these; the host build
 * (firmware_host/c/core/hal_host.c) provides them for the simulated rig.
 */
#ifndef BPD_HAL_H
#define BPD_HAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    void *ctx;
    uint32_t (*now_us)(void *ctx);                 /* free-running microseconds (wraps) */
    uint32_t (*cycles)(void *ctx);                 /* cycle counter (DWT->CYCCNT on a board) */
    uint32_t cycles_per_us;                        /* to turn cycles into time */
    /* raw sensor readings: positions (or encoder counts) then, if the rig measures them, velocities */
    void (*read_sensors)(void *ctx, float *raw, uint8_t n);
    void (*write_actuator)(void *ctx, const float *u, uint8_t n);
    void (*serial_write)(void *ctx, const uint8_t *data, size_t len);
} bpd_hal_t;

#endif /* BPD_HAL_H */
