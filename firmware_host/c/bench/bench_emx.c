/* emx-onnx-cgen's generated model (dense), from the same policy.onnx. */
#include "bench.h"
#include "peer_dims.h"

void model(int batch, const float obs[1][PEER_OBS_DIM], float action[1][PEER_ACT_DIM]);

int bench_infer(const float *obs, float *action)
{
    model(1, (const float(*)[PEER_OBS_DIM])obs, (float(*)[PEER_ACT_DIM])action);
    return 0;
}
