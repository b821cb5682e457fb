/*
 * fuzz_frontend.c — a model file (JSON) through everything the compiler
 * does before code generation: parse and validate, lower to the inference
 * graph and run the inference pipeline (shapes, verify, simplify, fold,
 * fusion, layout, memplan), then lower the train graph and run the
 * training pipeline (autodiff, memplan).  No LLVM.  Every failure must be
 * a diagnostic with rc -1; the sanitizers and libFuzzer catch the rest.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "frontend/spec.h"
#include "passes/passes.h"

static void check_failure(int rc, const KpDiag *d)
{
    if (rc != -1 || !d->msg[0]) {
        fprintf(stderr, "fuzz_frontend: rc %d with message '%s'\n", rc, d->msg);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    KpPassOpts po;
    kp_pass_opts_init(&po);
    po.verify = true;
    KpDiag d;
    kp_diag_init(&d);
    KpGraph *g = kp_graph_new();
    if (!g)
        return 0;
    KpModelSpec *spec = NULL;
    int rc = kp_frontend_parse_text("fuzz.json", (const char *)data, size, &g->arena, &spec, &d);
    if (rc != 0) {
        check_failure(rc, &d);
        kp_graph_free(g);
        return 0;
    }
    rc = kp_frontend_lower(spec, g, &d);
    if (rc == 0)
        rc = kp_pipeline_infer(g, &po, &d);
    if (rc != 0) {
        check_failure(rc, &d);
        kp_graph_free(g);
        return 0;
    }
    /* the train graph, as kp_build_program makes it: the spec lives in g's arena */
    KpGraph *t = kp_graph_new();
    if (t) {
        t->training = true;
        KpDiag td;
        kp_diag_init(&td);
        rc = kp_frontend_lower(spec, t, &td);
        if (rc == 0)
            rc = kp_pipeline_train(t, &po, &td);
        if (rc != 0)
            check_failure(rc, &td);
        kp_graph_free(t);
    }
    kp_graph_free(g);
    return 0;
}
