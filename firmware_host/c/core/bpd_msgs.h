/* generated - do not edit. Source: firmware_host/wire/spec.py;
 * regenerate with: python -m firmware_host.wire.spec */
#ifndef BPD_MSGS_H
#define BPD_MSGS_H

#include <stddef.h>
#include <stdint.h>

#define BPD_PROTOCOL_VERSION 6
#define BPD_MAX_PAYLOAD 254
#define BPD_MAX_ENCODED 256
#define BPD_MAX_FRAME 258
#define BPD_MAX_OBS 16
#define BPD_MAX_ACT 4

#define BPD_FLAG_RUNNING 1u
#define BPD_FLAG_CLAMPED 2u
#define BPD_FLAG_LIMIT_STOP 4u
#define BPD_FLAG_WATCHDOG 8u
#define BPD_FLAG_OVERRUN 16u
#define BPD_FLAG_DEVICE_POLICY 32u
#define BPD_FLAG_POLICY_ERROR 64u
#define BPD_FLAG_STALE_ACTION 128u
#define BPD_FLAG_CLASSICAL 256u
#define BPD_FLAG_ESTOP 512u

#define BPD_FAULT_NONE 0u
#define BPD_FAULT_WATCHDOG 1u
#define BPD_FAULT_SELFTEST 2u

#define BPD_SELFTEST_NONE 0u
#define BPD_SELFTEST_PASS 1u
#define BPD_SELFTEST_FAIL 2u

#define BPD_ACK_OK 0u
#define BPD_ACK_REJECTED 1u

#define BPD_CAP_DEVICE_POLICY 1u
#define BPD_CAP_ENCODERS 2u
#define BPD_CAP_HANDOVER 4u

#define BPD_MODE_HOST 0u
#define BPD_MODE_DEVICE 1u
#define BPD_MODE_HANDOVER 2u

#define BPD_STATE_IDLE 0u
#define BPD_STATE_RUNNING 1u
#define BPD_STATE_FAULT 2u

#define BPD_MSG_HELLO 0x01u /* host: host opens a session; the device answers INFO */
#define BPD_MSG_INFO 0x02u /* device: device description: versions, sizes, control period, first 8 bytes of the on-device model hash, boot counter, frames and actions dropped since power-on, the policy's self-test, the rate of the cycle counter; also sent unasked once at power-on */
#define BPD_MSG_CONFIG 0x03u /* host: control period, watchdog, mode (0 host policy, 1 device policy, 2 hand-over) and safety limits */
#define BPD_MSG_START 0x04u /* host: start running (state frames every tick) */
#define BPD_MSG_STOP 0x05u /* host: stop: actuator to zero, state IDLE */
#define BPD_MSG_RESET 0x06u /* host: stop, clear faults and reset the plant (a rig may use seed) */
#define BPD_MSG_ACK 0x07u /* device: answer to config/start/stop/reset: its id, the status and its header seq */
#define BPD_MSG_STATE 0x10u /* device: one control tick: device time, inference time, round trip of the previous exchange, flags, the policy call's cycles, the tick's jitter and its largest in the run, observation, action applied */
#define BPD_MSG_ACTION 0x11u /* host: host's action for the state whose sequence number it echoes */
#define BPD_MSG_FAULT 0x12u /* device: the device entered FAULT */

typedef struct {
    uint8_t protocol;
} bpd_hello_t;
size_t bpd_pack_hello(const bpd_hello_t *m, uint8_t *body, size_t cap);
int bpd_unpack_hello(const uint8_t *body, size_t len, bpd_hello_t *m);

typedef struct {
    uint8_t protocol;
    uint8_t fw_major;
    uint8_t fw_minor;
    uint8_t obs_dim;
    uint8_t act_dim;
    uint8_t caps;
    uint32_t period_us;
    uint8_t model_hash[8];
    uint16_t boot;
    uint32_t rx_dropped;
    uint32_t actions_dropped;
    uint8_t selftest;
    uint32_t cycle_hz;
} bpd_info_t;
size_t bpd_pack_info(const bpd_info_t *m, uint8_t *body, size_t cap);
int bpd_unpack_info(const uint8_t *body, size_t len, bpd_info_t *m);

typedef struct {
    uint32_t period_us;
    uint16_t watchdog_ticks;
    uint8_t mode;
    float action_limit;
    float pos_limit;
    float angle_limit;
} bpd_config_t;
size_t bpd_pack_config(const bpd_config_t *m, uint8_t *body, size_t cap);
int bpd_unpack_config(const uint8_t *body, size_t len, bpd_config_t *m);

typedef struct { uint8_t unused_;
} bpd_start_t;
size_t bpd_pack_start(const bpd_start_t *m, uint8_t *body, size_t cap);
int bpd_unpack_start(const uint8_t *body, size_t len, bpd_start_t *m);

typedef struct { uint8_t unused_;
} bpd_stop_t;
size_t bpd_pack_stop(const bpd_stop_t *m, uint8_t *body, size_t cap);
int bpd_unpack_stop(const uint8_t *body, size_t len, bpd_stop_t *m);

typedef struct {
    uint32_t seed;
} bpd_reset_t;
size_t bpd_pack_reset(const bpd_reset_t *m, uint8_t *body, size_t cap);
int bpd_unpack_reset(const uint8_t *body, size_t len, bpd_reset_t *m);

typedef struct {
    uint8_t of;
    uint8_t status;
    uint16_t echo_seq;
} bpd_ack_t;
size_t bpd_pack_ack(const bpd_ack_t *m, uint8_t *body, size_t cap);
int bpd_unpack_ack(const uint8_t *body, size_t len, bpd_ack_t *m);

typedef struct {
    uint32_t t_us;
    uint32_t infer_ns;
    uint32_t rtt_us;
    uint16_t flags;
    uint32_t policy_cycles;
    uint32_t jitter_us;
    uint32_t jitter_max_us;
    uint8_t n_obs;
    uint8_t n_act;
    float obs[16];
    float action[4];
} bpd_state_t;
size_t bpd_pack_state(const bpd_state_t *m, uint8_t *body, size_t cap);
int bpd_unpack_state(const uint8_t *body, size_t len, bpd_state_t *m);

typedef struct {
    uint16_t echo_seq;
    uint8_t n_act;
    float action[4];
} bpd_action_t;
size_t bpd_pack_action(const bpd_action_t *m, uint8_t *body, size_t cap);
int bpd_unpack_action(const uint8_t *body, size_t len, bpd_action_t *m);

typedef struct {
    uint8_t code;
    uint32_t detail;
} bpd_fault_t;
size_t bpd_pack_fault(const bpd_fault_t *m, uint8_t *body, size_t cap);
int bpd_unpack_fault(const uint8_t *body, size_t len, bpd_fault_t *m);

#endif
