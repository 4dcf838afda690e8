/* emlearn's generated network (dense, loadable form) from the same weights; the output layer
 * is tanh and the affine map to action units is applied here, as the ONNX graph does. */
#include "bench.h"
#include "peer_dims.h"
#include "peer_net.h"

static const float out_scale[PEER_ACT_DIM] = PEER_OUT_SCALE;
static const float out_offset[PEER_ACT_DIM] = PEER_OUT_OFFSET;

int bench_infer(const float *obs, float *action)
{
    int i;
    if (eml_net_regress(&peer_net, obs, PEER_OBS_DIM, action, PEER_ACT_DIM) != EmlOk) return -1;
    for (i = 0; i < PEER_ACT_DIM; ++i) action[i] = out_offset[i] + out_scale[i] * action[i];
    return 0;
}
