/*
 * oracle.h — what the PyTorch oracle tests share.
 */
#ifndef KP_TEST_ORACLE_H
#define KP_TEST_ORACLE_H

#include <stdint.h>

#define KP_ORACLE_PYTHON "/usr/bin/python3"

/* Whether Debian's python3-torch (with numpy) can be imported by
 * KP_ORACLE_PYTHON; the first call that finds it missing prints why the
 * tests are skipped. */
int kp_oracle_torch_available(void);

/* A xorshift64 stream of floats in [0,1) from *state (the batches fed to
 * both karpc and PyTorch). */
float kp_oracle_urand(uint64_t *state);

#endif
