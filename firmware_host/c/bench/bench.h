/* One inference of whichever runtime this image was built with. Emulators call it directly
 * (obs and action in RAM), so it must not be inlined or cloned. */
#ifndef BPD_BENCH_H
#define BPD_BENCH_H
#if defined(__clang__)
__attribute__((noinline)) int bench_infer(const float *obs, float *action);
#else
__attribute__((noipa, noinline)) int bench_infer(const float *obs, float *action);
#endif
#endif
