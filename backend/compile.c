/*
 * compile.c — the driver: model file to a running model, in-process.
 *
 *   kp_frontend_parse_file -> kp_frontend_lower -> kp_pipeline_infer   (kp_build_graph)
 *   -> kp_llvm_codegen -> kp_llvm_jit -> karp_model
 *
 * The graph and the codegen state are freed before returning; the model
 * keeps only the JIT (its code) and the runtime's buffers.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../frontend/spec.h"
#include "../include/karpc.h"
#include "../runtime/model.h"
#include "backend.h"

void karp_compile_options_init(karp_compile_options *o)
{
    memset(o, 0, sizeof *o);
    o->opt_level = 3;
}

int kp_build_graph(const char *path, const KpPassOpts *po, int64_t max_batch_override,
                   KpGraph **out, KpDiag *d)
{
    *out = NULL;
    KpPassOpts defaults;
    if (!po) {
        kp_pass_opts_init(&defaults);
        po = &defaults;
    }
    KpGraph *g = kp_graph_new();
    if (!g)
        return kp_error(d, "out of memory");
    /* the spec lives in the graph's arena: the graph may keep its strings */
    KpModelSpec *spec = NULL;
    if (kp_frontend_parse_file(path, &g->arena, &spec, d) < 0) {
        kp_graph_free(g);
        return -1;
    }
    if (max_batch_override > 0)
        spec->batch = max_batch_override;
    if (kp_frontend_lower(spec, g, d) < 0 || kp_pipeline_infer(g, po, d) < 0) {
        kp_graph_free(g);
        return -1;
    }
    *out = g;
    return 0;
}

karp_model *karp_compile(const char *model_path, const karp_compile_options *opts,
                         karp_error *err)
{
    karp_compile_options o;
    karp_compile_options_init(&o);
    if (opts)
        o = *opts;
    if (!model_path) {
        kp_rt_error(err, KARP_EINVAL, "karp_compile: model_path is NULL");
        return NULL;
    }
    if (o.opt_level < 0 || o.opt_level > 3 || o.max_batch < 0) {
        kp_rt_error(err, KARP_EINVAL, "karp_compile: bad options (opt_level %d, max_batch %d)",
                    o.opt_level, o.max_batch);
        return NULL;
    }
    FILE *probe = fopen(model_path, "r");
    if (!probe) {
        kp_rt_error(err, KARP_EIO, "%s: cannot open: %s", model_path, strerror(errno));
        return NULL;
    }
    fclose(probe);

    KpDiag d;
    kp_diag_init(&d);
    KpGraph *g = NULL;
    if (kp_build_graph(model_path, NULL, o.max_batch, &g, &d) < 0) {
        kp_rt_error(err, KARP_EMODEL, "%s", d.msg);
        return NULL;
    }
    KpTargetOpts t = {.opt_level = o.opt_level, .cpu = o.target_cpu, .features = o.target_features};
    KpCodegen *cg = NULL;
    karp_model *m = NULL;
    int rc = kp_llvm_codegen(g, &t, &cg, &d);
    kp_graph_free(g);
    if (rc == 0)
        rc = kp_llvm_jit(cg, &m, &d);
    kp_llvm_free(cg);
    if (rc < 0) {
        kp_rt_error(err, KARP_ECOMPILE, "%s", d.msg);
        return NULL;
    }
    return m;
}
