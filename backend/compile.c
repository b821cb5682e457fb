/*
 * compile.c — the driver: model file to a running model, in-process.
 *
 *   kp_frontend_parse_file -+-> kp_frontend_lower -> kp_pipeline_infer    (infer graph)
 *                           \-> kp_frontend_lower -> kp_pipeline_train    (train graph)
 *   -> kp_llvm_codegen (both graphs, one module) -> kp_llvm_jit -> karp_model
 *
 * The graphs and the codegen state are freed before returning; the model
 * keeps only the JIT (its code) and the runtime's buffers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Parse the model file, lower it and run the inference pipeline into
 * *out; *spec, the parsed model, lives in (*out)'s arena: graphs built
 * from it may keep its strings while *out lives.  0, or -1 with nothing
 * left allocated. */
static int build_infer(const char *path, const KpPassOpts *po, int64_t max_batch_override,
                       KpGraph **out, KpModelSpec **spec, KpDiag *d)
{
    *out = NULL;
    KpGraph *g = kp_graph_new();
    if (!g)
        return kp_error(d, "out of memory");
    if (kp_frontend_parse_file(path, &g->arena, spec, d) < 0) {
        kp_graph_free(g);
        return -1;
    }
    if (max_batch_override > 0)
        (*spec)->batch = max_batch_override;
    if ((*spec)->graph_form && (*spec)->nlayers > KP_MAX_LAYERS) {
        kp_error(d, "%s: nodes: has %d nodes; karpc compiles at most %d", path, (*spec)->nlayers,
                 KP_MAX_LAYERS);
        kp_graph_free(g);
        return -1;
    }
    if (kp_frontend_lower(*spec, g, d) < 0 || kp_pipeline_infer(g, po, d) < 0) {
        kp_graph_free(g);
        return -1;
    }
    *out = g;
    return 0;
}

/* po, or the default options in *defaults */
static const KpPassOpts *opts_or_default(const KpPassOpts *po, KpPassOpts *defaults)
{
    if (po)
        return po;
    kp_pass_opts_init(defaults);
    return defaults;
}

int kp_build_graph(const char *path, const KpPassOpts *po, int64_t max_batch_override,
                   KpGraph **out, KpDiag *d)
{
    KpPassOpts defaults;
    KpModelSpec *spec = NULL;
    return build_infer(path, opts_or_default(po, &defaults), max_batch_override, out, &spec, d);
}

int kp_build_program(const char *path, const KpPassOpts *po, int64_t max_batch_override,
                     KpProgram *p, KpDiag *d)
{
    p->infer = p->train = NULL;
    p->no_train_reason = NULL;
    KpPassOpts defaults;
    po = opts_or_default(po, &defaults);
    /* the spec lives in the inference graph's arena, which outlives the
     * train graph in kp_program_free */
    KpModelSpec *spec = NULL;
    KpGraph *g;
    if (build_infer(path, po, max_batch_override, &g, &spec, d) < 0)
        return -1;
    p->infer = g;

    KpGraph *t = kp_graph_new();
    if (!t) {
        kp_program_free(p);
        return kp_error(d, "out of memory");
    }
    t->training = true;
    KpDiag td;
    kp_diag_init(&td);
    /* A model with an op that cannot be trained yet still compiles for
     * inference; its descriptor says why it has no training code, and the
     * training calls fail with that reason. */
    if (kp_frontend_lower(spec, t, &td) < 0 || kp_pipeline_train(t, po, &td) < 0) {
        kp_graph_free(t);
        p->no_train_reason = strdup(td.msg);
        if (!p->no_train_reason) {
            kp_program_free(p);
            return kp_error(d, "out of memory");
        }
        return 0;
    }
    if (t->param_floats != g->param_floats) {
        kp_graph_free(t);
        kp_program_free(p);
        return kp_error(d, "internal error: the train graph's parameter slab differs from "
                           "inference's");
    }
    p->train = t;
    return 0;
}

void kp_program_free(KpProgram *p)
{
    if (!p)
        return;
    kp_graph_free(p->train);    /* first: it may point into infer's arena */
    kp_graph_free(p->infer);
    free(p->no_train_reason);
    p->train = p->infer = NULL;
    p->no_train_reason = NULL;
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
    if (o.opt_level < 0 || o.opt_level > 3 || o.max_batch < 0 || (o.disable_passes & ~KARPC_NO_ALL)) {
        kp_rt_error(err, KARP_EINVAL,
                    "karp_compile: bad options (opt_level %d, max_batch %d, disable_passes 0x%x)",
                    o.opt_level, o.max_batch, o.disable_passes);
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
    KpProgram p;
    KpPassOpts po;
    kp_pass_opts_init(&po);
    po.fuse = !(o.disable_passes & KARPC_NO_FUSE);
    po.group = !(o.disable_passes & KARPC_NO_GROUP);
    po.layout = !(o.disable_passes & KARPC_NO_LAYOUT);
    po.memplan = !(o.disable_passes & KARPC_NO_MEMPLAN);
    po.fold = !(o.disable_passes & KARPC_NO_FOLD);
    if (o.check_numerics)
        po.memplan = false;     /* every value's bytes kept: the check scans them all */
    if (kp_build_program(model_path, &po, o.max_batch, &p, &d) < 0) {
        kp_rt_error(err, KARP_EMODEL, "%s", d.msg);
        return NULL;
    }
    KpTargetOpts t = {.opt_level = o.opt_level, .cpu = o.target_cpu, .features = o.target_features};
    KpCodegen *cg = NULL;
    karp_model *m = NULL;
    int rc = kp_llvm_codegen(&p, &t, &cg, &d);
    kp_program_free(&p);
    if (rc == 0)
        rc = kp_llvm_jit(cg, &m, &d);
    kp_llvm_free(cg);
    if (rc < 0) {
        kp_rt_error(err, rc == -2 ? KARP_ENOMEM : KARP_ECOMPILE, "%s", d.msg);
        return NULL;
    }
    return m;
}
