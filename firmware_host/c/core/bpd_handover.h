/*
 * Hand-over mode's classical controller (docs/protocol.md, rule 17), for the one file of a build that links
 * the policies (hal_host.c, boards/board_cortexm.c). A build given a classical export made for hand-over
 * (`bpd classical export --handover`: names bpd_classical_*, self-test in classical_selftest.h) defines
 * BPD_HAVE_CLASSICAL; the rig's `handover` block gives the region (BPD_RIG_HANDOVER_INIT).
 */
#ifndef BPD_HANDOVER_H
#define BPD_HANDOVER_H

#ifdef BPD_HAVE_CLASSICAL
#include "bpd_fw.h"
#include "bpd_rig_config.h"
#include "classical_selftest.h"
#include "policy.h"

#ifndef BPD_RIG_HANDOVER_INIT
#error "hand-over mode needs the handover block of the rig (its region)"
#endif

extern const bpd_model_t bpd_classical_model;
extern const char bpd_classical_model_hash[];
int bpd_classical_policy_run(const bpd_model_t *model, const float *obs, float *action, float *scratch);

static const float bpd_classical_selftest_obs_[] = BPD_CLASSICAL_SELFTEST_OBS;
static const float bpd_classical_selftest_action_[] = BPD_CLASSICAL_SELFTEST_ACTION;
static const bpd_selftest_t bpd_classical_pairs_ = {BPD_CLASSICAL_SELFTEST_N, bpd_classical_selftest_obs_,
                                                    bpd_classical_selftest_action_, BPD_CLASSICAL_SELFTEST_TOL};
static const bpd_handover_region_t bpd_handover_region_ = BPD_RIG_HANDOVER_INIT;
#endif

#endif /* BPD_HANDOVER_H */
