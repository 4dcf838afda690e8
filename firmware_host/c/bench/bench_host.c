/* Host timing harness: median nanoseconds per inference over repeated timed loops.
 * usage: bench_host [iterations] [repeats] */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    static float obs[256];
    static float action[16];
    static double ns[64];
    long n = argc > 1 ? atol(argv[1]) : 10000, i;
    int reps = argc > 2 ? atoi(argv[2]) : 7, r;
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;
    for (i = 0; i < 256; ++i) obs[i] = 0.01f * (float)((i * 37) % 11 - 5);
    for (r = 0; r < reps; ++r) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (i = 0; i < n; ++i) {
            obs[0] = 0.001f * (float)(i & 15);
            (void)bench_infer(obs, action);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ns[r] = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)(n ? n : 1);
    }
    qsort(ns, (size_t)reps, sizeof ns[0], cmp);
    printf("%.3f %.9g\n", ns[reps / 2], (double)action[0]);
    return 0;
}
