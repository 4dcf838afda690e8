/* Generic configuration of the policy kernel: every storage path compiled in. An export directory
 * holds a generated policy_config.h that enables only the paths its model uses. */
#ifndef BPD_POLICY_CONFIG_H
#define BPD_POLICY_CONFIG_H
#define BPD_USE_DENSE 1
#define BPD_USE_CSR8 1
#define BPD_USE_CSR16 1
#define BPD_USE_INT8 1
#endif
