/*
 * pipeline.c — the order of the passes, as plain code.
 *
 *   kp_pipeline_infer:  shapes simplify fold fusion layout group memplan
 *   kp_pipeline_train:  shapes autodiff simplify fusion group memplan
 *
 * With o->verify the verifier runs after every pass.  A pass switched off
 * (--no-fuse, --no-layout, --no-fold) is not run; memplan always runs and
 * reads o->memplan itself (off: every value its own range).  With
 * o->dump_after naming a pass, the graph is printed (IR text, or dot with
 * o->dump_dot) to o->dump_to right after that pass's first run.  With
 * o->log, each run's wall time and its one-line report are recorded.
 */
#include "passes.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

/* Every pass name --dump-after accepts, in pipeline order. */
static const char *const pass_names[] = {"shapes", "verify", "autodiff", "simplify",
                                         "fold",   "fusion", "layout",   "group",  "memplan"};
enum { NPASS = sizeof pass_names / sizeof pass_names[0] };

void kp_pass_opts_init(KpPassOpts *o)
{
    *o = (KpPassOpts){.verify = true, .fuse = true, .group = true, .layout = true, .memplan = true, .fold = true};
}

typedef struct Run {
    const KpPassOpts *o;
    const char *graph;      /* "infer" or "train" */
    bool dumped;
} Run;

void kp_pass_report(const KpPassOpts *o, const char *fmt, ...)
{
    if (!o || !o->log || o->log->n <= 0)
        return;
    char *what = o->log->e[o->log->n - 1].what;
    size_t len = strlen(what);
    if (len + 3 >= sizeof o->log->e[0].what)
        return;
    if (len)
        strcpy(what + len, "; "), len += 2;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what + len, sizeof o->log->e[0].what - len, fmt, ap);
    va_end(ap);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int run(KpGraph *g, Run *r, const char *name, KpPassFn pass, KpDiag *d)
{
    KpPassLog *log = r->o->log;
    int slot = -1;
    if (log && log->n < KP_PASS_LOG_MAX && strcmp(name, "verify") != 0) {
        slot = log->n++;
        memset(&log->e[slot], 0, sizeof log->e[slot]);
        snprintf(log->e[slot].pass, sizeof log->e[slot].pass, "%s", name);
        snprintf(log->e[slot].graph, sizeof log->e[slot].graph, "%s", r->graph);
    }
    double t0 = now_ms();
    int rc = pass(g, r->o, d);
    if (slot >= 0)
        log->e[slot].ms = now_ms() - t0;
    if (rc)
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

/* run, then the verifier after it with o->verify; a pass switched off is skipped */
static int step(KpGraph *g, Run *r, const char *name, KpPassFn pass, bool on, KpDiag *d)
{
    if (!on)
        return 0;
    if (run(g, r, name, pass, d))
        return -1;
    return r->o->verify ? run(g, r, "verify", kp_pass_verify, d) : 0;
}

int kp_pipeline_infer(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    if (check_dump_after(o, d))
        return -1;
    Run r = {.o = o, .graph = "infer"};
    kp_fill_uses(g);
    if (step(g, &r, "shapes", kp_pass_shapes, true, d) ||
        step(g, &r, "simplify", kp_pass_simplify, true, d) ||
        step(g, &r, "fold", kp_pass_fold, o->fold, d) ||
        step(g, &r, "fusion", kp_pass_fusion, o->fuse, d) ||
        step(g, &r, "layout", kp_pass_layout, o->layout, d) ||
        step(g, &r, "group", kp_pass_group, o->group, d) ||
        step(g, &r, "memplan", kp_pass_memplan, true, d))
        return -1;
    return 0;
}

int kp_pipeline_train(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    if (check_dump_after(o, d))
        return -1;
    Run r = {.o = o, .graph = "train"};
    kp_fill_uses(g);
    if (step(g, &r, "shapes", kp_pass_shapes, true, d) ||
        step(g, &r, "autodiff", kp_pass_autodiff, true, d) ||
        step(g, &r, "simplify", kp_pass_simplify, true, d) ||
        step(g, &r, "fusion", kp_pass_fusion, o->fuse, d) ||
        step(g, &r, "group", kp_pass_group, o->group, d) ||
        step(g, &r, "memplan", kp_pass_memplan, true, d))
        return -1;
    return 0;
}
