/* generated - do not edit.
 * source sha256: c16e8d1c9c896eab0ade261ac8684d2202b5598ad8e22e388e2ad89b696998b3
 * model hash: fcf1b9b8b0ca04a9800f88bab17fe37d7b7953b7766d180f659ec4459acef611
 * regenerate with: bpd export /work/main/benchmarks/work/seed0/teacher.npz --out /work/main/benchmarks/results/device/seed0/work/teacher_export
 */
#ifndef BPD_POLICY_CONFIG_H
#define BPD_POLICY_CONFIG_H
/* storage paths this model uses: the kernel compiles only these */
#define BPD_USE_DENSE 1
#define BPD_USE_CSR8 0
#define BPD_USE_CSR16 0
#define BPD_USE_INT8 0
#endif
