/* Benchmark image: runs the policy forever on a fixed observation, so the code is linked in. */
#include "bench.h"

static float obs[256];
static float action[16];

int main(void)
{
    for (;;) {
        (void)bench_infer(obs, action);
    }
}
