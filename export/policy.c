/* bpd policy kernel; see policy.h. */
#include "policy.h"
#include "policy_config.h"

#include <math.h>
#include <stddef.h>

#ifdef BPD_FAST_TANH
/* Odd rational approximation, 13th/6th order, on [-7.9053, 7.9053]; tanh is +-1 in float beyond. */
float bpd_tanh(float x)
{
    const float clamp = 7.90531110763549805f;
    float x2, p, q;
    if (x > clamp) x = clamp;
    if (x < -clamp) x = -clamp;
    if (fabsf(x) < 0.0004f) return x;
    x2 = x * x;
    p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 - 8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    p = p * x;
    q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return p / q;
}
#else
float bpd_tanh(float x) { return tanhf(x); }
#endif

static void safe_output(const bpd_model_t *m, float *action)
{
    uint16_t i;
    if (m == NULL || action == NULL) return;
    for (i = 0; i < m->out_dim; ++i) action[i] = m->safe_action[i];
}

static int bpd_finite(float x)
{
    /* true for every number except NaN and +-Inf, without relying on isfinite under -ffast-math */
    return (x == x) && (x - x == 0.0f);
}

static float activate(uint8_t kind, float v)
{
    if (kind == BPD_ACT_TANH) return bpd_tanh(v);
    if (kind == BPD_ACT_RELU) return v > 0.0f ? v : 0.0f;
    return v;
}

/* policy_config.h (generated with the weights) says which storage paths the model uses, so
 * only those are compiled; each defaults to on when the header is the generic one. */
static void layer_run(const bpd_layer_t *L, const float *in, float *out)
{
    uint16_t r;
    for (r = 0; r < L->rows; ++r) {
        float acc = 0.0f;
#if BPD_USE_DENSE
        if (L->storage == BPD_DENSE) {
            const size_t base = (size_t)r * L->cols;
            uint16_t c;
#if BPD_USE_INT8
            if (L->qvalues != NULL) {
                for (c = 0; c < L->cols; ++c) acc += (float)L->qvalues[base + c] * in[c];
                acc *= L->row_scale[r];
            } else
#endif
            {
                for (c = 0; c < L->cols; ++c) acc += L->values[base + c] * in[c];
            }
        }
#endif
#if BPD_USE_CSR8
        if (L->storage == BPD_CSR8) {
            uint16_t k;
            const uint16_t end = L->row_ptr[r + 1];
#if BPD_USE_INT8
            if (L->qvalues != NULL) {
                for (k = L->row_ptr[r]; k < end; ++k) acc += (float)L->qvalues[k] * in[L->col8[k]];
                acc *= L->row_scale[r];
            } else
#endif
            {
                for (k = L->row_ptr[r]; k < end; ++k) acc += L->values[k] * in[L->col8[k]];
            }
        }
#endif
#if BPD_USE_CSR16
        if (L->storage == BPD_CSR16) {
            uint16_t k;
            const uint16_t end = L->row_ptr[r + 1];
#if BPD_USE_INT8
            if (L->qvalues != NULL) {
                for (k = L->row_ptr[r]; k < end; ++k) acc += (float)L->qvalues[k] * in[L->col16[k]];
                acc *= L->row_scale[r];
            } else
#endif
            {
                for (k = L->row_ptr[r]; k < end; ++k) acc += L->values[k] * in[L->col16[k]];
            }
        }
#endif
        out[r] = activate(L->activation, acc + L->bias[r]);
    }
}

int bpd_policy_run(const bpd_model_t *model, const float *obs, float *action, float *scratch)
{
    const float *in;
    float *bufs[2];
    uint16_t i;
    uint8_t l;
    if (model == NULL || action == NULL) return BPD_ERR_ARG;
    if (obs == NULL || scratch == NULL || model->n_layers == 0) {
        safe_output(model, action);
        return BPD_ERR_ARG;
    }
    for (i = 0; i < model->in_dim; ++i) {
        if (!bpd_finite(obs[i])) {
            safe_output(model, action);
            return BPD_ERR_NONFINITE;
        }
    }
    bufs[0] = scratch;
    bufs[1] = scratch + model->max_width;
    in = obs;
    if (model->in_offset != NULL) { /* centred in bufs[1]: layer 0 reads it and writes bufs[0] */
        if (model->max_width < model->in_dim) { /* a descriptor whose scratch cannot hold the input */
            safe_output(model, action);
            return BPD_ERR_ARG;
        }
        for (i = 0; i < model->in_dim; ++i) bufs[1][i] = obs[i] - model->in_offset[i];
        in = bufs[1];
    }
    for (l = 0; l < model->n_layers; ++l) {
        float *out = (l == model->n_layers - 1) ? action : bufs[l & 1u];
        layer_run(&model->layers[l], in, out);
        in = out;
    }
    for (i = 0; i < model->out_dim; ++i) {
        float a = action[i];
        if (model->output == BPD_OUT_TANH) {
            a = model->out_offset[i] + model->out_scale[i] * bpd_tanh(a);
        }
        if (a < model->action_low[i]) a = model->action_low[i];
        if (a > model->action_high[i]) a = model->action_high[i];
        action[i] = a;
    }
    return BPD_OK;
}
