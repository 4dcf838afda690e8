/* generated - do not edit.
 * source sha256: 57307f1300a5cfe9affe72a42fd84646dc49cd69caffd681afdd74306ee34ab7
 * model hash: 26f67c4d5a35357e7e33ee86f99d92100ed5bd69d88d336d4a0d98049af15038
 * regenerate with: bench: masked student
 */
#ifndef BPD_POLICY_CONFIG_H
#define BPD_POLICY_CONFIG_H
/* storage paths this model uses: the kernel compiles only these */
#define BPD_USE_DENSE 1
#define BPD_USE_CSR8 0
#define BPD_USE_CSR16 0
#define BPD_USE_INT8 0
#endif
