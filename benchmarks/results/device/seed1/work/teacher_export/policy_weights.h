/* generated - do not edit.
 * source sha256: 84c50ec0df085ff596a9c7635cb3bd717669bc44d6a63f8da2df1ca270683a56
 * model hash: b21439dd83a644cddb67ca89daa1144a4054eb27e8eb757846be5a0520d8cc02
 * regenerate with: bpd export /work/main/benchmarks/work/seed1/teacher.npz --out /work/main/benchmarks/results/device/seed1/work/teacher_export
 */

#ifndef BPD_POLICY_WEIGHTS_H
#define BPD_POLICY_WEIGHTS_H

#include <stddef.h>

#include "policy.h"

#define BPD_OBS_DIM 4
#define BPD_ACT_DIM 1

#define BPD_SCRATCH_FLOATS 512

extern const bpd_model_t bpd_model;
extern const char bpd_model_hash[];

#endif
