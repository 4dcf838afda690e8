/*
 * Board-independent driver logic for a real rig: quadrature encoder unwrapping, the motor command
 * as PWM duty and direction, and the end-stop / emergency-stop latch. Pure C99 with no registers,
 * so the host tests (tests/test_drivers.py) run the very code a board port calls; a port
 * (boards/board_nucleo_f446.c) only reads its timers and pins and writes its PWM compare register.
 */
#ifndef BPD_DRIVERS_H
#define BPD_DRIVERS_H

#include <stdint.h>

/* ---- quadrature encoder ------------------------------------------------------------------------
 * A timer in encoder mode counts up and down in 16 bits and wraps. Read at least once per 32767
 * counts of travel (every control tick is far more often), the signed difference of two reads is the
 * step, whatever wrapped in between, and the 32-bit count keeps the whole travel. */
typedef struct {
    uint16_t last;   /* the timer's count at the last read */
    int32_t count;   /* unwrapped counts since bpd_encoder_init */
} bpd_encoder_t;

void bpd_encoder_init(bpd_encoder_t *e, uint16_t raw);
/* Take a new read of the timer; returns the step since the previous read (counts). */
int32_t bpd_encoder_update(bpd_encoder_t *e, uint16_t raw);
/* The unwrapped count as the board reports it to the core: negated when the rig's wiring inverts it. */
float bpd_encoder_counts(const bpd_encoder_t *e, uint8_t invert);
/* The same in rig units (rad or m): counts / counts_per_unit, as the core computes it. */
float bpd_encoder_position(const bpd_encoder_t *e, float counts_per_unit, uint8_t invert);

/* ---- motor: PWM duty and direction from a signed command ---------------------------------------
 * The command u is in the rig's action unit. It is clamped to +-action_limit (the core clamps too:
 * the driver holds the limit on its own), full_scale is the command of 100 % duty, top the timer's
 * compare value of 100 %. A non-finite u, a non-positive or non-finite limit or full scale, or an
 * active stop gives duty 0. invert swaps the direction (a motor wired the other way round). */
typedef struct {
    uint16_t duty;    /* compare value, 0..top */
    uint8_t reverse;  /* 1: drive the direction pin for negative motion */
} bpd_pwm_t;

bpd_pwm_t bpd_pwm_from_command(float u, float action_limit, float full_scale, uint16_t top, uint8_t invert,
                               uint8_t stopped);

/* ---- end stops and emergency stop ---------------------------------------------------------------
 * Each input is one bit. An interrupt trips the latch at the edge (and the board zeroes its PWM in
 * the same interrupt); the control tick polls the levels as well, so a missed edge still stops the
 * motor within one tick. The latch holds until every input is released and the board clears it
 * (when the core is not running: a run stopped by an end stop never restarts by itself). */
typedef struct {
    volatile uint8_t latched;  /* 1: the motor is held at zero */
    volatile uint8_t sources;  /* the inputs that tripped it, one bit each */
} bpd_stop_latch_t;

void bpd_stop_init(bpd_stop_latch_t *s);
void bpd_stop_trip(bpd_stop_latch_t *s, uint8_t source_bits);
/* The tick's poll: `active` holds the inputs active now (already corrected for active-low wiring).
 * Trips on any; returns the latch. */
uint8_t bpd_stop_poll(bpd_stop_latch_t *s, uint8_t active);
/* Clears the latch only when no input is active; returns 1 if it is clear afterwards. */
uint8_t bpd_stop_clear(bpd_stop_latch_t *s, uint8_t active);

#endif /* BPD_DRIVERS_H */
