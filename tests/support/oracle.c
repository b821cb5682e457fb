#include "oracle.h"

#include <stdio.h>

#include "testutil.h"

int kp_oracle_torch_available(void)
{
    static int have_torch = -1;
    if (have_torch < 0) {
        KpRun r = kp_test_run(KP_ORACLE_PYTHON " -c 'import torch, numpy'");
        have_torch = r.status == 0;
        kp_test_run_free(&r);
        if (!have_torch)
            printf("skipped: PyTorch oracle tests need python3-torch (apt-get install "
                   "python3-torch)\n");
    }
    return have_torch;
}

float kp_oracle_urand(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (float)(*state >> 40) / (float)(1 << 24);
}
