/* bpd's kernel with the exported weights. */
#include "bench.h"
#include "policy_weights.h"

static float scratch[BPD_SCRATCH_FLOATS];

int bench_infer(const float *obs, float *action)
{
    return bpd_policy_run(&bpd_model, obs, action, scratch);
}
