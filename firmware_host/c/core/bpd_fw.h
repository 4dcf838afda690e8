/*
 * bpd firmware core: protocol session, control tick, safety. Portable C99 on top of bpd_hal.h.
 *
 * The board calls bpd_fw_on_bytes() with whatever the serial port received and bpd_fw_tick()
 * once per control period (from a timer). Every tick while running: read sensors, build the
 * observation (velocities estimated by filtered differences where the rig has only encoders), run
 * the on-device policy (device mode), enforce limits, write the actuator and stream a STATE frame.
 * The host answers each STATE with an ACTION echoing its sequence number; the first answer to the
 * latest STATE is accepted (applied at once in host mode; in device mode it only shows the host is
 * there) and every other ACTION is dropped. The actuator is written zero on stop, reset, fault and
 * limit stop, and when no ACTION is accepted for watchdog_ticks ticks (in any mode). Hand-over mode (mode 2,
 * docs/protocol.md rule 17) runs a classical controller (bpd_fw_set_classical) outside the rig's region and
 * the policy inside it. Which command
 * is taken in which state, and what each refusal answers, is the state table in docs/protocol.md.
 */
#ifndef BPD_FW_H
#define BPD_FW_H

#include <stdint.h>

#include "bpd_hal.h"
#include "bpd_msgs.h"
#include "bpd_wire.h"

#define BPD_FW_MAJOR 0
#define BPD_FW_MINOR 9

/* The stop inputs bpd_fw_external_stop is given: an end stop ends the run as a limit stop (flag bit 2), the
 * emergency stop with its own flag (bit 9), so that a host tells the one from the other (both: both flags). */
#define BPD_STOP_END 1u
#define BPD_STOP_EMERGENCY 2u

typedef enum { BPD_IDLE = BPD_STATE_IDLE, BPD_RUNNING = BPD_STATE_RUNNING, BPD_FAULT = BPD_STATE_FAULT } bpd_fw_state_t;

/* The policy the device runs in device mode: a function so the core does not depend on the
 * kernel; returns 0 on success and writes a safe action otherwise. */
typedef int (*bpd_policy_fn)(void *ctx, const float *obs, float *action);

/* The policy's boot self-test (docs/protocol.md, "Self-test"): n observations (n x obs_dim), the actions
 * the shipped policy gave for them at export (n x act_dim), and the tolerance (0: bit-exact). An export
 * generates them (policy_selftest.h; bpd_selftest.h makes this struct of it). */
typedef struct {
    uint8_t n;
    const float *obs;
    const float *action;
    float tol;
} bpd_selftest_t;

/* Hand-over mode (docs/protocol.md, rule 17): the region in which the learned policy acts, from the rig's
 * `handover` block (bpd_rig_config.h, BPD_RIG_HANDOVER_INIT). Inside: |obs[i]| below bound[i] (strictly) for
 * every observation i, obs[angle_index] first wrapped to one turn, [-pi, pi); anywhere else the classical
 * controller acts. */
typedef struct {
    uint8_t angle_index;
    float bound[BPD_MAX_OBS];
} bpd_handover_region_t;

/* What the board measures and how the core turns it into an observation. The rig description
 * (a YAML file in firmware_host/rig/rigs/) generates one of these per rig (bpd_rig_config.h). */
typedef struct {
    uint8_t n_pos;              /* position-like sensors (cart position, angles) */
    uint8_t measured_vel;       /* 1: the sensors also deliver velocities; 0: estimate them */
    float counts_per_unit[BPD_MAX_OBS]; /* >0: that position is an encoder in counts */
    float vel_filter_hz[BPD_MAX_OBS];   /* first-order low-pass of each differentiated position (0: none) */
    uint8_t pos_index;          /* which observation is checked against pos_limit */
    uint8_t angle_index;        /* which observation is checked against angle_limit */
} bpd_sensor_cfg_t;

/* A rig's fixed facts and the defaults that hold until a CONFIG changes them; the rig's own watchdog, action limit and
 * track also bound what a CONFIG may set (config_ok in bpd_fw.c). */
typedef struct {
    uint32_t period_us;         /* control period; fixed by the rig (a CONFIG may only repeat it) */
    uint8_t obs_dim, act_dim;
    bpd_sensor_cfg_t sensors;
    uint16_t watchdog_ticks;    /* default before CONFIG, and the longest a CONFIG may set */
    float action_limit, pos_limit, angle_limit; /* defaults before CONFIG, rig units; the action limit the widest */
    float track;                /* the hard stops either side of centre, position units: the widest position limit a
                                 * CONFIG may set; 0: the rig has no track (no bound but positive finite) */
} bpd_fw_config_t;

typedef struct {
    bpd_hal_t hal;
    bpd_sensor_cfg_t sensors;
    bpd_policy_fn policy;       /* NULL: no on-device policy */
    void *policy_ctx;
    uint8_t model_hash[8];
    const bpd_selftest_t *selftest_pairs; /* NULL: none stored */
    uint8_t selftest;             /* BPD_SELFTEST_NONE, _PASS or _FAIL: the last run (boot, RESET) */
    uint32_t selftest_detail;     /* the FAULT detail of a failed self-test */
    /* hand-over mode: the classical controller, its self-test and the learned policy's region */
    bpd_policy_fn classical;      /* NULL: no hand-over mode */
    void *classical_ctx;
    const bpd_selftest_t *classical_pairs;
    uint8_t classical_selftest;   /* as selftest, for the classical controller */
    uint32_t classical_selftest_detail;
    bpd_handover_region_t region;
    uint8_t handover_latched;     /* 1: the learned policy failed in this run; the classical acts to its end */
    uint8_t obs_dim, act_dim;
    /* configuration */
    uint32_t period_us;
    uint16_t watchdog_ticks;
    uint8_t mode;
    float action_limit, pos_limit, angle_limit;
    float rig_action_limit;       /* the rig's own (bpd_fw_config_t): a CONFIG may narrow the action limit, never widen it */
    uint16_t rig_watchdog_ticks;  /* the rig's own: a CONFIG may shorten the watchdog, never lengthen it */
    float rig_track;              /* the rig's track (0: none): a CONFIG's position limit goes no further */
    /* state */
    bpd_fw_state_t state;
    uint16_t tx_seq, last_state_seq;
    uint8_t state_open;           /* 1: the latest STATE of this run has no accepted ACTION yet */
    uint16_t ticks_without_action;
    uint32_t last_tick_us;
    uint32_t jitter_max_us;       /* the largest tick jitter of this run (rule 16) */
    float applied[BPD_MAX_ACT];   /* what the actuator holds now */
    uint32_t late_actions;        /* ACTIONs dropped: not RUNNING, or not the first answer to the latest STATE */
    uint16_t boot;                /* the board's start counter, in every INFO */
    uint32_t last_state_us;       /* device time the last STATE was sent */
    uint32_t rtt_us;              /* last STATE sent -> its ACTION applied (0: unanswered) */
    float prev_pos[BPD_MAX_OBS];
    float vel[BPD_MAX_OBS];
    uint8_t have_prev;
    uint32_t ticks, overruns, watchdog_trips;
    uint8_t fault_code;
    uint16_t action_flags;        /* clamped bit of the action the actuator holds */
    uint32_t bad_bodies;          /* frames with a valid CRC but a body of the wrong size */
    uint32_t unknown_ids;         /* frames with a valid CRC and an id the device does not take */
    uint32_t reset_seed;
    uint8_t reset_requested;
    uint8_t external_stop;        /* BPD_STOP_* inputs tripped (bpd_fw_external_stop): the next tick stops */
    bpd_parser_t parser;
} bpd_fw_t;

void bpd_fw_init(bpd_fw_t *fw, const bpd_hal_t *hal, const bpd_fw_config_t *cfg);
void bpd_fw_set_policy(bpd_fw_t *fw, bpd_policy_fn fn, void *ctx, const uint8_t model_hash[8]);
/* After set_policy, before boot: the pairs the self-test runs at boot and on every RESET (NULL: none). */
void bpd_fw_set_selftest(bpd_fw_t *fw, const bpd_selftest_t *pairs);
/* After set_policy, before boot: the classical controller of hand-over mode, its self-test pairs (NULL: none)
 * and the region in which the learned policy acts. CONFIG takes mode 2 only with both controllers set. */
void bpd_fw_set_classical(bpd_fw_t *fw, bpd_policy_fn fn, void *ctx, const bpd_selftest_t *pairs,
                          const bpd_handover_region_t *region);
/* Once, after init and set_policy: announce the start with an unasked INFO carrying the board's start
 * counter (a board keeps it across resets where it can; 0 where it cannot). */
void bpd_fw_boot(bpd_fw_t *fw, uint16_t boot);
void bpd_fw_on_bytes(bpd_fw_t *fw, const uint8_t *data, size_t len);
void bpd_fw_tick(bpd_fw_t *fw);
/* Stop inputs tripped (`which`: BPD_STOP_END, BPD_STOP_EMERGENCY or both; a board calls this before the tick):
 * the actuator goes to zero now, no ACTION is applied any more, and the next tick ends the run (IDLE), as when a
 * limit is passed: flag bit 2 for an end stop, bit 9 for the emergency stop (any other value: an end stop's).
 * Nothing happens outside a run. */
void bpd_fw_external_stop(bpd_fw_t *fw, uint8_t which);
/* 1 once after a RESET message (the rig resets its plant then), else 0. */
int bpd_fw_take_reset(bpd_fw_t *fw, uint32_t *seed);

#endif /* BPD_FW_H */
