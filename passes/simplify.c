/*
 * simplify.c — see passes.h.  Scaffold: the pass runs and changes nothing yet.
 */
#include "passes.h"

int kp_pass_simplify(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    (void)g, (void)d;
    kp_pass_report(o, "not implemented yet");
    return 0;
}
