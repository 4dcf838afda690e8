/*
 * bpd policy kernel: runs an exported sparse MLP policy. C99, no malloc, no recursion.
 *
 * The weights live in a generated policy_weights.c as const arrays (flash on a device).
 * The caller owns every buffer:
 *
 *   float scratch[BPD_SCRATCH_FLOATS];            from policy_weights.h
 *   int rc = bpd_policy_run(&bpd_model, obs, action, scratch);
 *
 * On success rc is BPD_OK. If an observation is NaN or infinite, rc is BPD_ERR_NONFINITE and the
 * action is the model's safe action (zero clamped into the action bounds): the actuator is told
 * to stop, never fed garbage. Bad arguments give BPD_ERR_ARG and, where action is writable, the
 * same safe action.
 *
 * obs is the environment's observation as it comes (the student's normalisation is folded into the
 * first layer: do not normalise it again); action is in the environment's units, within its bounds.
 * No static or global mutable state (the model and its weights are const: flash): two contexts (a task
 * and an interrupt) may call it at once, each with its own scratch and action (an integer kernel on an
 * FPU core uses FPU registers: -DBPD_INT_FP=0 for a caller that does not save them, export/README.md).
 * The stack it takes on Cortex-M4F is printed by `bpd export` and in export_report.json (kernel,
 * the shipped candidate's stack_bytes); `bpd firmware build --target ...` gives a whole image's per part.
 * Every export names the same symbols (bpd_policy_run, bpd_model, ...): two exports in one image
 * collide unless one is packaged under a name of its own (bpd export --package cmake --package-name
 * swing: swing_policy_run, ...); export/README.md, "Two exports in one image".
 *
 * Compile-time options:
 *   -DBPD_FAST_TANH   rational tanh approximation instead of libm tanhf
 *                     (max abs error 3.9e-7 on [-10, 10] against tanh in double precision,
 *                     measured by tests/test_export_c.py::test_fast_tanh_max_error)
 */
#ifndef BPD_POLICY_H
#define BPD_POLICY_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BPD_OK 0
#define BPD_ERR_NONFINITE (-1)
#define BPD_ERR_ARG (-2)

enum bpd_storage { BPD_DENSE = 0, BPD_CSR8 = 1, BPD_CSR16 = 2 };
enum bpd_activation { BPD_ACT_NONE = 0, BPD_ACT_TANH = 1, BPD_ACT_RELU = 2 };
enum bpd_output { BPD_OUT_TANH = 0, BPD_OUT_CLIP = 1 };

typedef struct {
    uint16_t rows;            /* outputs */
    uint16_t cols;            /* inputs */
    uint8_t storage;          /* enum bpd_storage */
    uint8_t activation;       /* enum bpd_activation, applied after the bias */
    const float *values;      /* float weights: rows*cols (dense) or nnz (CSR); NULL when int8 */
    const int8_t *qvalues;    /* int8 weights, same layout; NULL when float */
    const float *row_scale;   /* int8: one scale per row; NULL when float */
    const uint8_t *col8;      /* CSR8 column indices (nnz) */
    const uint16_t *col16;    /* CSR16 column indices (nnz) */
    const uint16_t *row_ptr;  /* CSR row starts (rows + 1) */
    const float *bias;        /* rows */
} bpd_layer_t;

typedef struct {
    uint16_t in_dim;
    uint16_t out_dim;
    uint16_t max_width;       /* widest layer output (or in_dim, if larger, with in_offset):
                                 scratch needs 2 * max_width floats */
    uint8_t n_layers;
    uint8_t output;           /* enum bpd_output */
    const bpd_layer_t *layers;
    const float *out_scale;   /* tanh output: action = out_offset + out_scale * tanh(y) */
    const float *out_offset;
    const float *action_low;  /* clip output, and the safe action's bounds */
    const float *action_high;
    const float *safe_action; /* written on error */
    const float *in_offset;   /* in_dim floats subtracted from the observation before the first
                                 layer (the normalisation mean), or NULL */
} bpd_model_t;

/* Run the policy on one observation (in_dim floats) into action (out_dim floats). */
int bpd_policy_run(const bpd_model_t *model, const float *obs, float *action, float *scratch);

/* The hidden activation used by the kernel (libm or the fast approximation). */
float bpd_tanh(float x);

#ifdef __cplusplus
}
#endif
#endif /* BPD_POLICY_H */
