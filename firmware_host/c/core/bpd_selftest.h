/*
 * The export's stored self-test pairs as the core's bpd_selftest_t (bpd_fw.h), for the one file of a
 * build that links the policy (hal_host.c, boards/board_cortexm.c). A build whose export has a
 * policy_selftest.h defines BPD_HAVE_SELFTEST; without one (an export older than the self-test)
 * BPD_SELFTEST_PAIRS is NULL and INFO says no self-test ran.
 */
#ifndef BPD_SELFTEST_H
#define BPD_SELFTEST_H

#include "bpd_fw.h"

#ifdef BPD_HAVE_SELFTEST
#include "policy_selftest.h"
static const float bpd_selftest_obs_[] = BPD_SELFTEST_OBS;
static const float bpd_selftest_action_[] = BPD_SELFTEST_ACTION;
static const bpd_selftest_t bpd_selftest_pairs_ = {BPD_SELFTEST_N, bpd_selftest_obs_, bpd_selftest_action_,
                                                   BPD_SELFTEST_TOL};
#define BPD_SELFTEST_PAIRS (&bpd_selftest_pairs_)
#else
#define BPD_SELFTEST_PAIRS NULL
#endif

#endif /* BPD_SELFTEST_H */
