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
 * compare value of 100 %. A non-finite u, a non-positive or non-finite limit or full scale gives duty
 * 0, and so does a command in a blocked direction (BPD_BLOCK_POSITIVE, BPD_BLOCK_NEGATIVE: an end
 * stop held on that side, or both for the emergency stop). invert swaps the direction pin (a motor
 * wired the other way round); the blocked directions are the command's, before the swap. */
#define BPD_BLOCK_POSITIVE 1u
#define BPD_BLOCK_NEGATIVE 2u

typedef struct {
    uint16_t duty;    /* compare value, 0..top */
    uint8_t reverse;  /* 1: drive the direction pin for negative motion */
} bpd_pwm_t;

bpd_pwm_t bpd_pwm_from_command(float u, float action_limit, float full_scale, uint16_t top, uint8_t invert,
                               uint8_t blocked);

/* ---- end stops and emergency stop ---------------------------------------------------------------
 * Each input is one bit. A stop that becomes active is an event (`tripped`): the board zeroes the PWM
 * in its interrupt and, at the next tick, hands the event to the core, which ends a run as a limit
 * stop. The tick polls the levels too, so an edge the interrupt missed still stops the motor within
 * one tick. While an input stays active it blocks the command towards its side (an end stop) or both
 * (the emergency stop), so a new run may drive away from a pressed end stop but never into it. The
 * emergency stop (the input that blocks both directions) also ends a run at every tick while it is held,
 * not only on its press (ISO 13850: its release must not by itself restart motion): a run started with
 * it held ends at its first tick, and after the release only a new START moves the motor. An event
 * not yet taken blocks both: from the interrupt's zero until the tick ends the run no command moves the
 * motor (an ACTION taken in between, or a switch bouncing open, would otherwise drive it again). */
typedef struct {
    volatile uint8_t active;   /* the inputs active at the last update */
    volatile uint8_t tripped;  /* inputs that became active since the last bpd_stops_take */
} bpd_stops_t;

void bpd_stops_init(bpd_stops_t *s);
/* The inputs active now (already corrected for active-low wiring); returns those newly active. */
uint8_t bpd_stops_update(bpd_stops_t *s, uint8_t active);
/* The stop events since the last call, cleared. */
uint8_t bpd_stops_take(bpd_stops_t *s);
/* The stops that end a run at this tick: the events since the last call (cleared, as bpd_stops_take), and
 * every input held now that blocks both directions (in pos_mask and neg_mask: the emergency stop). */
uint8_t bpd_stops_ending(bpd_stops_t *s, uint8_t pos_mask, uint8_t neg_mask);
/* The blocked command directions: an active input in pos_mask blocks positive commands, in neg_mask
 * negative ones (the emergency stop is in both); an event not yet taken blocks both. */
uint8_t bpd_stops_blocked(const bpd_stops_t *s, uint8_t pos_mask, uint8_t neg_mask);

#endif /* BPD_DRIVERS_H */
