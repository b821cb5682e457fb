/*
 * pipeline.c — the order of the passes, as plain code.
 *
 *   kp_pipeline_infer:  shapes -> verify -> memplan -> verify
 *   kp_pipeline_train:  shapes -> verify -> autodiff -> verify -> memplan -> verify
 *
 * The verifier runs only with o->verify.  With o->dump_after naming a
 * pass, the graph is printed (IR text, or dot with o->dump_dot) to
 * o->dump_to right after that pass's first run.
 */
#include "passes.h"

#include <string.h>

/* Every pass name --dump-after accepts, in pipeline order. */
static const char *const pass_names[] = {"shapes", "verify", "autodiff", "memplan"};
enum { NPASS = sizeof pass_names / sizeof pass_names[0] };

void kp_pass_opts_init(KpPassOpts *o)
{
    *o = (KpPassOpts){.verify = true, .fuse = true, .layout = true};
}

typedef struct Run {
    const KpPassOpts *o;
    bool dumped;
} Run;

static int run(KpGraph *g, Run *r, const char *name, KpPassFn pass, KpDiag *d)
{
    if (pass(g, r->o, d))
        return -1;
    if (!r->dumped && r->o->dump_after && strcmp(r->o->dump_after, name) == 0) {
        FILE *f = r->o->dump_to ? r->o->dump_to : stdout;
        if (r->o->dump_dot)
            kp_print_dot(f, g);
        else
            kp_print_ir(f, g);
        r->dumped = true;
    }
    return 0;
}

static int check_dump_after(const KpPassOpts *o, KpDiag *d)
{
    if (!o->dump_after)
        return 0;
    for (int i = 0; i < NPASS; i++)
        if (strcmp(o->dump_after, pass_names[i]) == 0)
            return 0;
    char list[256] = "";
    for (int i = 0; i < NPASS; i++) {
        strcat(list, i ? ", " : "");
        strcat(list, pass_names[i]);
    }
    return kp_error(d, "--dump-after: unknown pass '%s' (passes: %s)", o->dump_after, list);
}

/* run, then the verifier after it with o->verify */
static int step(KpGraph *g, Run *r, const char *name, KpPassFn pass, KpDiag *d)
{
    if (run(g, r, name, pass, d))
        return -1;
    return r->o->verify ? run(g, r, "verify", kp_pass_verify, d) : 0;
}

int kp_pipeline_infer(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    if (check_dump_after(o, d))
        return -1;
    Run r = {.o = o};
    kp_fill_uses(g);
    if (step(g, &r, "shapes", kp_pass_shapes, d))
        return -1;
    if (step(g, &r, "memplan", kp_pass_memplan, d))
        return -1;
    return 0;
}

int kp_pipeline_train(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    if (check_dump_after(o, d))
        return -1;
    Run r = {.o = o};
    kp_fill_uses(g);
    if (step(g, &r, "shapes", kp_pass_shapes, d))
        return -1;
    if (step(g, &r, "autodiff", kp_pass_autodiff, d))
        return -1;
    if (step(g, &r, "memplan", kp_pass_memplan, d))
        return -1;
    return 0;
}
