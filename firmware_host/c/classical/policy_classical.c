/*
 * Classical rotary-pendulum controller behind the policy kernel's entry point (policy.h):
 * energy-based swing-up, and discrete LQR within switch_angle of upright. C99, no malloc, no state.
 *
 * Observation [theta, alpha, theta', alpha'] (rad, rad/s; alpha unwrapped, 0 upright); action one
 * voltage, clipped to +-action_limit. The constants come from the generated policy_weights.c
 * (bpd classical export), designed from the rig's linearised model. A NaN or infinite observation
 * gives the safe action (0 V) and BPD_ERR_NONFINITE, like a network policy.
 *
 * Its names come from policy_weights.h: bpd_policy_run, bpd_tanh and bpd_classical in a plain export (the
 * firmware runs it as its policy), bpd_classical_policy_run, _tanh and _design in one exported for hand-over
 * mode (`--handover`), so it links beside a learned policy's kernel.
 */
#include <math.h>

#include "policy_weights.h"

static int finite4(const float *x)
{
    int i;
    for (i = 0; i < 4; ++i) {
        if (!(x[i] - x[i] == 0.0f)) return 0; /* NaN and +-inf give NaN */
    }
    return 1;
}

static float clampf(float v, float lim)
{
    return v > lim ? lim : (v < -lim ? -lim : v);
}

float BPD_CLASSICAL_TANH(float x)
{
    return tanhf(x);
}

int BPD_CLASSICAL_RUN(const bpd_model_t *model, const float *obs, float *action, float *scratch)
{
    const bpd_classical_t *c = &BPD_CLASSICAL_DESIGN;
    const float pi = 3.14159265358979f, two_pi = 6.28318530717959f;
    float th, al, thd, ald, phi, v;
    (void)scratch;
    if (!model || !action) return BPD_ERR_ARG;
    if (!obs) {
        action[0] = 0.0f;
        return BPD_ERR_ARG;
    }
    if (!finite4(obs)) {
        action[0] = 0.0f;
        return BPD_ERR_NONFINITE;
    }
    th = obs[0];
    al = obs[1];
    thd = obs[2];
    ald = obs[3];
    phi = al - two_pi * floorf((al + pi) / two_pi); /* wrapped to [-pi, pi) */
    if (fabsf(phi) < c->switch_angle) {
        v = -(c->k[0] * th + c->k[1] * phi + c->k[2] * thd + c->k[3] * ald);
    } else {
        /* energy swing-up: an arm acceleration, realised through the model's inverse dynamics */
        float sa = sinf(al), ca = cosf(al), jpz = c->jp - c->jz;
        float e = 0.5f * c->jp * ald * ald + c->mgl * (ca - 1.0f);
        float sgn = ald * ca >= 0.0f ? 1.0f : -1.0f;
        float a = clampf(c->energy_gain * (c->energy_ref - e) * sgn, c->accel_max);
        float alpha_acc, inertia, tau;
        a -= c->arm_kp * th + c->arm_kd * thd;
        alpha_acc = (c->mrl * ca * a + jpz * sa * ca * thd * thd + c->mgl * sa - c->pend_damping * ald) / c->jp;
        inertia = c->ja + c->jz * ca * ca + c->jp * sa * sa;
        tau = inertia * a + 2.0f * jpz * sa * ca * ald * thd - c->mrl * ca * alpha_acc + c->mrl * sa * ald * ald +
              c->arm_damping * thd;
        v = c->volts_per_torque * tau + c->back_emf * thd;
    }
    action[0] = clampf(v, c->action_limit);
    return BPD_OK;
}
