/* generated - do not edit.
 * source sha256: c16e8d1c9c896eab0ade261ac8684d2202b5598ad8e22e388e2ad89b696998b3
 * model hash: fcf1b9b8b0ca04a9800f88bab17fe37d7b7953b7766d180f659ec4459acef611
 * regenerate with: bpd export /work/main/benchmarks/work/seed0/teacher.npz --out /work/main/benchmarks/results/device/seed0/work/teacher_export
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
