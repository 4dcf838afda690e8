/* generated - do not edit.
 * source sha256: 57307f1300a5cfe9affe72a42fd84646dc49cd69caffd681afdd74306ee34ab7
 * model hash: 26f67c4d5a35357e7e33ee86f99d92100ed5bd69d88d336d4a0d98049af15038
 * regenerate with: bench: masked student
 */

#ifndef BPD_POLICY_WEIGHTS_H
#define BPD_POLICY_WEIGHTS_H

#include <stddef.h>

#include "policy.h"

#define BPD_OBS_DIM 4
#define BPD_ACT_DIM 1

#define BPD_SCRATCH_FLOATS 128

extern const bpd_model_t bpd_model;
extern const char bpd_model_hash[];

#endif
