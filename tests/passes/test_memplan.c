/*
 * test_memplan.c — the memory plan with liveness and in-place reuse.
 *
 *   checker      every workspace value of a planned graph (the example
 *                models' infer and train graphs, random graphs) against
 *                live ranges recomputed here from docs/passes-memplan.md's
 *                rules: two values that share bytes are never live at once,
 *                unless one is a view of the other or a map node writes its
 *                output over an input that dies there
 *   figures      fashion_cnn's and resnet_cifar's train workspace at most
 *                half of the unplanned transient bytes (printed)
 *   equivalence  every example model JIT-compiled with and without the plan:
 *                karp_infer, 5 karp_train_step losses, and the gradients of
 *                karp_forward ... karp_backward (twice) equal within 1e-5
 *   --no-memplan one range per value, and the pass's one-line report
 */
#include <check.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "include/karpc.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "testutil.h"

/* --- the independent checker --------------------------------------------- */

static bool view_op(KpOp op)
{
    return op == KP_OP_flatten || op == KP_OP_reshape || op == KP_OP_dropout;
}

/* ops that write element i from element i of their inputs only (kp_emit_map) */
static bool map_op(KpOp op)
{
    switch (op) {
    case KP_OP_relu: case KP_OP_leaky_relu: case KP_OP_sigmoid: case KP_OP_tanh:
    case KP_OP_add: case KP_OP_mul: case KP_OP_relu_grad: case KP_OP_leaky_relu_grad:
    case KP_OP_sigmoid_grad: case KP_OP_tanh_grad: case KP_OP_mse_grad: case KP_OP_bce_grad:
    case KP_OP_bce_logits_grad:
        return true;
    default:
        return false;
    }
}

static int64_t nbytes(const KpGraph *g, const KpValue *v)
{
    return kp_value_numel(v, g->max_batch) * 4;
}

/* The value owning v's bytes: views of workspace values are their input. */
static const KpValue *base_of(const KpValue *v)
{
    while (v->producer && view_op(v->producer->op) && v->producer->in[0]->storage == v->storage &&
           v->producer->in[0]->offset == v->offset)
        v = v->producer->in[0];
    return v;
}

typedef struct Live {
    int def, last;
} Live;

/* Where n runs: in its phase, or an INPUT_GRAD member of a group whose
 * first member is BACKWARD with that first member (passes/group.c). */
static KpPhase runs_in(const KpGraph *g, const KpNode *n)
{
    int k = n->id;
    while (n->group > 0 && k > 0 && g->nodes[k - 1]->group == n->group)
        k--;
    if (n->phase == KP_PHASE_INPUT_GRAD && g->nodes[k]->phase == KP_PHASE_BACKWARD)
        return KP_PHASE_BACKWARD;
    return n->phase;
}

/* The schedule position of every node: FORWARD, LOSS, BACKWARD,
 * INPUT_GRAD, UPDATE, each in node order (runs_in), the members of a
 * group (they run at once) at their first member's; -1 for PREPARE
 * nodes. */
static int *schedule(const KpGraph *g, int *count)
{
    static const KpPhase order[] = {KP_PHASE_FORWARD, KP_PHASE_LOSS, KP_PHASE_BACKWARD,
                                    KP_PHASE_INPUT_GRAD, KP_PHASE_UPDATE};
    int *pos = malloc((size_t)g->nnodes * sizeof *pos + 1), n = 0;
    for (int k = 0; k < g->nnodes; k++)
        pos[k] = -1;
    int prev = -1;
    for (int r = 0; r < 5; r++)
        for (int k = 0; k < g->nnodes; k++)
            if (runs_in(g, g->nodes[k]) == order[r]) {
                const KpNode *nd = g->nodes[k];
                bool joins = prev >= 0 && nd->group > 0 && g->nodes[prev]->group == nd->group;
                pos[k] = joins ? pos[prev] : n++;
                prev = k;
            }
    *count = n;
    return pos;
}

/* Live ranges of the bases, by value id, over the schedule, from the
 * documented rules; pos (may be NULL) receives the schedule. */
static Live *live_ranges(const KpGraph *g, int **pos_out)
{
    int ns;
    int *pos = schedule(g, &ns);
    Live *lv = calloc((size_t)g->nvalues, sizeof *lv);
    for (int i = 0; i < g->nvalues; i++)
        lv[i] = (Live){INT32_MAX, -1};
    int last_fwd = -1, first_other = ns, last_bwd = -1;
    for (int k = 0; k < g->nnodes; k++) {
        KpPhase ph = g->nodes[k]->phase;
        if (pos[k] < 0)
            continue;
        if (ph == KP_PHASE_FORWARD)
            last_fwd = pos[k] > last_fwd ? pos[k] : last_fwd;
        else
            first_other = pos[k] < first_other ? pos[k] : first_other;
        if ((ph == KP_PHASE_BACKWARD || ph == KP_PHASE_INPUT_GRAD) && pos[k] > last_bwd)
            last_bwd = pos[k];
    }
#define TOUCH(v, k)                                                  \
    do {                                                             \
        const KpValue *b_ = base_of(v);                              \
        if (b_->storage == KP_STORE_WORKSPACE) {                     \
            Live *l_ = &lv[b_->id];                                  \
            l_->def = (k) < l_->def ? (k) : l_->def;                 \
            l_->last = (k) > l_->last ? (k) : l_->last;              \
        }                                                            \
    } while (0)
    for (int k = 0; k < g->nnodes; k++) {
        const KpNode *n = g->nodes[k];
        if (pos[k] < 0)
            continue;
        for (int o = 0; o < kp_node_nout(n); o++)
            TOUCH(kp_node_output(n, o), pos[k]);
        for (int i = 0; i < n->nin; i++) {
            TOUCH(n->in[i], pos[k]);
            const KpValue *b = base_of(n->in[i]);
            bool bwd = n->phase == KP_PHASE_BACKWARD || n->phase == KP_PHASE_INPUT_GRAD;
            bool dy = g->d_output && b == base_of(g->d_output);    /* karp_backward's copy */
            if (bwd && !dy && b->producer && b->producer->phase == KP_PHASE_FORWARD)
                TOUCH(b, last_bwd);
        }
    }
    if (g->training) {
        TOUCH(g->output, last_fwd);
        if (g->loss_value)
            TOUCH(g->loss_value, ns);
        if (g->d_output)
            TOUCH(g->d_output, first_other);
    }
#undef TOUCH
    if (pos_out)
        *pos_out = pos;
    else
        free(pos);
    return lv;
}

/* May a (dying at node n) and b (made by n over it) share bytes? */
static bool in_place_pair(const KpGraph *g, const KpValue *a, const KpValue *b, const Live *lv,
                          const int *pos)
{
    const KpNode *n = b->producer;
    if (!n || !map_op(n->op) || n->group > 0 || b == g->d_output || lv[a->id].last != pos[n->id] ||
        lv[b->id].def != pos[n->id] || a->offset != b->offset || nbytes(g, a) != nbytes(g, b))
        return false;
    for (int i = 0; i < n->nin; i++)
        if (base_of(n->in[i]) == a)
            return true;
    return false;
}

/* Every check of one planned graph; returns how many workspace bases share bytes. */
static int check_plan(const KpGraph *g, const char *what)
{
    int *pos;
    Live *lv = live_ranges(g, &pos);
    int shared = 0;
    for (int i = 0; i < g->nvalues; i++) {
        const KpValue *v = g->values[i];
        if (v->storage != KP_STORE_WORKSPACE)
            continue;
        ck_assert_msg(v->offset % 64 == 0 && v->offset >= 0 &&
                          v->offset + nbytes(g, v) <= g->workspace_bytes,
                      "%s: %%%d at %lld+%lld outside the workspace (%lld) or misaligned", what,
                      v->id, (long long)v->offset, (long long)nbytes(g, v),
                      (long long)g->workspace_bytes);
        if (base_of(v) != v)
            continue;
        ck_assert_msg(lv[i].last >= 0, "%s: %%%d in the workspace but never live", what, v->id);
        for (int j = 0; j < i; j++) {
            const KpValue *w = g->values[j];
            if (w->storage != KP_STORE_WORKSPACE || base_of(w) != w)
                continue;
            bool bytes = v->offset < w->offset + nbytes(g, w) && w->offset < v->offset + nbytes(g, v);
            if (!bytes)
                continue;
            shared++;
            bool live = lv[i].def <= lv[j].last && lv[j].def <= lv[i].last;
            ck_assert_msg(!live || in_place_pair(g, w, v, lv, pos) || in_place_pair(g, v, w, lv, pos),
                          "%s: %%%d [%d,%d] and %%%d [%d,%d] are live at once and share bytes "
                          "(@ws+%lld, @ws+%lld)",
                          what, v->id, lv[i].def, lv[i].last, w->id, lv[j].def, lv[j].last,
                          (long long)v->offset, (long long)w->offset);
        }
    }
    free(lv);
    free(pos);
    return shared;
}

/* The most bytes live at once: no plan of these live ranges needs less. */
static int64_t max_live_bytes(const KpGraph *g)
{
    int *pos;
    Live *lv = live_ranges(g, &pos);
    int64_t most = 0;
    for (int k = 0; k <= g->nnodes; k++) {
        int64_t sum = 0;
        for (int i = 0; i < g->nvalues; i++) {
            const KpValue *v = g->values[i];
            if (v->storage == KP_STORE_WORKSPACE && base_of(v) == v && lv[i].def <= k && k <= lv[i].last)
                sum += (nbytes(g, v) + 63) / 64 * 64;
        }
        /* a map written in place holds one range for its input and output */
        for (int i = 0; i < g->nvalues; i++) {
            const KpValue *v = g->values[i];
            if (v->storage != KP_STORE_WORKSPACE || base_of(v) != v || lv[i].def != k)
                continue;
            for (int j = 0; j < g->nvalues; j++)
                if (j != i && g->values[j]->storage == KP_STORE_WORKSPACE &&
                    in_place_pair(g, g->values[j], v, lv, pos))
                    sum -= (nbytes(g, v) + 63) / 64 * 64;
        }
        most = sum > most ? sum : most;
    }
    free(lv);
    free(pos);
    return most;
}

/* --- the example models --------------------------------------------------- */

static glob_t examples;

static void find_examples(void)
{
    memset(&examples, 0, sizeof examples);
    glob(KARP_SOURCE_DIR "/examples/*.json", 0, NULL, &examples);
    glob(KARP_SOURCE_DIR "/examples/*/*.json", GLOB_APPEND, NULL, &examples);
}

/* Fusion off for a test that counts maps put in place (fused maps are
 * no nodes of their own). */
static bool no_fuse;
/* Every optimizing pass off: the graph --stats's "without passes" is. */
static bool all_off;

static void build(const char *path, bool memplan, int64_t max_batch, KpProgram *p, KpPassLog *log)
{
    KpPassOpts po;
    kp_pass_opts_init(&po);
    po.memplan = memplan;
    po.fuse = !no_fuse && !all_off;
    po.fold = po.layout = !all_off;
    po.log = log;
    KpDiag d;
    kp_diag_init(&d);
    ck_assert_msg(kp_build_program(path, &po, max_batch, p, &d) == 0, "%s: %s", path, d.msg);
}

START_TEST(examples_checked)
{
    ck_assert_int_ge((int)examples.gl_pathc, 9);
    for (size_t i = 0; i < examples.gl_pathc; i++) {
        const char *path = examples.gl_pathv[i];
        KpProgram p;
        build(path, true, 0, &p, NULL);
        char what[600];
        snprintf(what, sizeof what, "%s (infer)", path);
        check_plan(p.infer, what);
        if (p.train) {
            snprintf(what, sizeof what, "%s (train)", path);
            check_plan(p.train, what);
        }
        KpProgram u;
        build(path, false, 0, &u, NULL);
        ck_assert_int_le(p.infer->workspace_bytes, u.infer->workspace_bytes);
        if (p.train)
            ck_assert_int_le(p.train->workspace_bytes, u.train->workspace_bytes);
        kp_program_free(&u);
        kp_program_free(&p);
    }
}
END_TEST

/* The figures of docs/passes-memplan.md; the train workspace at most half. */
START_TEST(workspace_halved)
{
    static const char *const models[] = {"fashion_mlp", "fashion_cnn", "resnet_cifar"};
    char over[256] = "";
    for (int i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/examples/%s.json", KARP_SOURCE_DIR, models[i]);
        KpProgram p, u;
        build(path, true, 0, &p, NULL);
        build(path, false, 0, &u, NULL);
        ck_assert_ptr_nonnull(p.train);
        int64_t ti = kp_graph_transient_bytes(p.infer), tt = kp_graph_transient_bytes(p.train);
        printf("%-13s batch %3lld  infer: %10lld planned (most live %10lld), %10lld unplanned"
               "  train: %10lld planned (most live %10lld), %10lld unplanned\n",
               models[i], (long long)p.infer->max_batch, (long long)p.infer->workspace_bytes,
               (long long)max_live_bytes(p.infer), (long long)ti,
               (long long)p.train->workspace_bytes, (long long)max_live_bytes(p.train),
               (long long)tt);
        fflush(stdout);
        ck_assert_int_ge(p.train->workspace_bytes, max_live_bytes(p.train));
        ck_assert_int_ge(p.infer->workspace_bytes, max_live_bytes(p.infer));
        ck_assert_int_eq(u.train->workspace_bytes, tt);   /* --no-memplan: the plain sum */
        ck_assert_int_eq(u.infer->workspace_bytes, ti);
        /* the plan needs no more than the bytes live at once, and at most half
         * of what the graph without any optimizing pass would take unplanned
         * (docs/passes-memplan.md) */
        if (i > 0) {
            ck_assert_int_eq(p.train->workspace_bytes, max_live_bytes(p.train));
            KpProgram z;
            all_off = true;
            build(path, false, 0, &z, NULL);
            all_off = false;
            int64_t tz = kp_graph_transient_bytes(z.train);
            printf("%s: train workspace %lld, %.3f of the %lld transient bytes without passes\n",
                   models[i], (long long)p.train->workspace_bytes,
                   (double)p.train->workspace_bytes / (double)tz, (long long)tz);
            fflush(stdout);
            if (2 * p.train->workspace_bytes > tz && !*over)
                snprintf(over, sizeof over, "%s: train workspace %lld > %lld / 2", models[i],
                         (long long)p.train->workspace_bytes, (long long)tz);
            kp_program_free(&z);
        }
        kp_program_free(&u);
        kp_program_free(&p);
    }
    ck_assert_msg(!*over, "%s", over);
}
END_TEST

/* The pass says what it did, for --stats. */
START_TEST(report)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/ir/golden/mlp.json", KARP_SOURCE_DIR);
    no_fuse = true;
    for (int on = 0; on < 2; on++) {
        KpPassLog log = {0};
        KpProgram p;
        build(path, on, 0, &p, &log);
        int found = 0;
        for (int i = 0; i < log.n; i++) {
            if (strcmp(log.e[i].pass, "memplan") != 0)
                continue;
            const KpGraph *g = strcmp(log.e[i].graph, "train") == 0 ? p.train : p.infer;
            char want[240];
            snprintf(want, sizeof want, "workspace %lld bytes (unplanned %lld), ",
                     (long long)g->workspace_bytes, (long long)kp_graph_transient_bytes(g));
            ck_assert_msg(strncmp(log.e[i].what, want, strlen(want)) == 0, "report '%s', want '%s...'",
                          log.e[i].what, want);
            if (!on)
                ck_assert_ptr_nonnull(strstr(log.e[i].what, ", 0 values share ranges, 0 in place"));
            /* mlp.json's infer graph (tests/ir/golden/mlp.ir): 8 maps in place,
             * 3 dense outputs in ranges freed before */
            if (on && g == p.infer)
                ck_assert_str_eq(log.e[i].what,
                                 "workspace 12288 bytes (unplanned 46336), 3 values share ranges, 8 in place");
            found++;
        }
        ck_assert_int_eq(found, 2);
        kp_program_free(&p);
    }
    no_fuse = false;
}
END_TEST

/* --- random graphs -------------------------------------------------------- */

static unsigned rng = 12345;

static int pick(int n)
{
    rng = rng * 1103515245u + 12345u;
    return (int)((rng >> 16) % (unsigned)n);
}

/* A random graph-form model of 1-D features: dense (with activations),
 * activations, dropout, batchnorm, add, concat, reshape pairs. */
static char *random_model(int seed)
{
    static const char *const acts[] = {"none", "relu", "sigmoid", "tanh", "leaky_relu"};
    static const char *const losses[] = {"mse", "cross_entropy", "bce_logits", NULL};
    size_t cap = 16384, len = 0;
    char *s = malloc(cap);
    int width[40];
    char name[40][16];
    int nn = 0;
    const char *loss = losses[pick(4)];
    len += (size_t)snprintf(s + len, cap - len,
                            "{\"karp\": 1, \"name\": \"r%d\", \"seed\": %d, \"batch\": %d, "
                            "\"input\": {\"shape\": [6]}, \"nodes\": [",
                            seed, seed, 1 + pick(9));
    int nlayers = 4 + pick(12);
    for (int l = 0; l < nlayers; l++) {
        int a = nn ? nn - 1 - pick(nn < 3 ? nn : 3) : -1;   /* a recent node, or the input */
        if (nn == 0 || pick(4) == 0)
            a = nn ? pick(nn) : -1;
        if (a >= 0 && width[a] < 0)
            a++;            /* a reshape's rank-2 output: take the flatten after it */
        const char *in = a < 0 ? "input" : name[a];
        int w = a < 0 ? 6 : width[a];
        snprintf(name[nn], sizeof name[nn], "n%d", nn);
        char node[4096];
        int kind = pick(8);
        int b = -1;
        for (int j = 0; j < nn && (kind == 6 || kind == 7); j++)
            if (j != a && w > 0 && (kind == 7 ? width[j] > 0 : width[j] == w) && pick(2))
                b = j;
        if ((kind == 6 || kind == 7) && b < 0)
            kind = 0;
        switch (kind) {
        case 0: case 1:
            w = 4 + pick(12);
            snprintf(node, sizeof node, "{\"name\": \"%s\", \"type\": \"dense\", \"input\": \"%s\", "
                     "\"units\": %d, \"activation\": \"%s\"}", name[nn], in, w, acts[pick(5)]);
            break;
        case 2:
            snprintf(node, sizeof node, "{\"name\": \"%s\", \"type\": \"%s\", \"input\": \"%s\"}",
                     name[nn], acts[1 + pick(4)], in);
            break;
        case 3:
            snprintf(node, sizeof node, "{\"name\": \"%s\", \"type\": \"dropout\", \"input\": \"%s\", "
                     "\"rate\": 0.25}", name[nn], in);
            break;
        case 4:
            snprintf(node, sizeof node, "{\"name\": \"%s\", \"type\": \"batchnorm\", \"input\": \"%s\"}",
                     name[nn], in);
            break;
        case 5:
            snprintf(node, sizeof node, "{\"name\": \"%s\", \"type\": \"reshape\", \"input\": \"%s\", "
                     "\"shape\": [%d, 1]}", name[nn], in, w);
            /* and straight back to one dimension */
            len += (size_t)snprintf(s + len, cap - len, "%s%s", nn ? ", " : "", node);
            nn++;
            snprintf(name[nn], sizeof name[nn], "n%d", nn);
            snprintf(node, sizeof node, "{\"name\": \"%s\", \"type\": \"flatten\", \"input\": \"%s\"}",
                     name[nn], name[nn - 1]);
            width[nn - 1] = -1;   /* rank 2: not an add or concat operand */
            break;
        case 6:
            snprintf(node, sizeof node, "{\"name\": \"%s\", \"type\": \"add\", \"inputs\": [\"%s\", \"%s\"]}",
                     name[nn], in, name[b]);
            break;
        default:
            snprintf(node, sizeof node, "{\"name\": \"%s\", \"type\": \"concat\", \"inputs\": [\"%s\", \"%s\"]}",
                     name[nn], in, name[b]);
            w += width[b];
            break;
        }
        width[nn] = w;
        len += (size_t)snprintf(s + len, cap - len, "%s%s", nn ? ", " : "", node);
        nn++;
    }
    snprintf(s + len, cap - len,
             "], \"output\": \"%s\"%s%s%s, \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.1}}",
             name[nn - 1], loss ? ", \"loss\": \"" : "", loss ? loss : "", loss ? "\"" : "");
    return s;
}

START_TEST(random_graphs_checked)
{
    char *dir = kp_test_tmpdir();
    int shared = 0, trained = 0;
    for (int i = 0; i < 150; i++) {
        char *json = random_model(i);
        char *path = kp_test_path(dir, "r.json");
        ck_assert_int_eq(kp_test_write_file(path, json), 0);
        KpPassOpts po;
        kp_pass_opts_init(&po);
        po.fuse = pick(2);
        KpDiag d;
        kp_diag_init(&d);
        KpProgram p;
        ck_assert_msg(kp_build_program(path, &po, 0, &p, &d) == 0, "%s\n%s", d.msg, json);
        char what[64];
        snprintf(what, sizeof what, "random model %d (infer)", i);
        shared += check_plan(p.infer, what);
        if (p.train) {
            snprintf(what, sizeof what, "random model %d (train)", i);
            shared += check_plan(p.train, what);
            trained++;
        }
        kp_program_free(&p);
        free(path);
        free(json);
    }
    ck_assert_int_gt(shared, 150);     /* the checker saw reuse to judge */
    ck_assert_int_eq(trained, 150);
    kp_test_rmdir(dir);
    free(dir);
}
END_TEST

/* --- equivalence through the JIT ------------------------------------------ */

enum { BATCH = 3 };

static karp_model *jit(const char *path, bool memplan)
{
    karp_compile_options o;
    karp_compile_options_init(&o);
    o.max_batch = BATCH;
    o.disable_passes = memplan ? 0 : KARPC_NO_MEMPLAN;
    o.opt_level = KP_TEST_OPT(3);
    karp_error err;
    karp_model *m = karp_compile(path, &o, &err);
    ck_assert_msg(m != NULL, "%s: %s", path, err.message);
    return m;
}

static double worst_rel;

/* Check's ck_assert records a mark in its message file on every success:
 * once per element that was 13 million writes, most of this test's time.
 * So the elements are compared in plain C and only a mismatch fails. */
static void same(const float *a, const float *b, int64_t count, const char *what, const char *path)
{
    for (int64_t i = 0; i < count; i++) {
        double x = a[i], y = b[i], scale = fmax(fabs(x), fabs(y));
        double rel = scale > 0 ? fabs(x - y) / scale : 0;
        worst_rel = rel > worst_rel ? rel : worst_rel;
        if (!(fabs(x - y) <= 1e-5 * scale))
            ck_abort_msg("%s: %s[%lld] %.9g (planned) vs %.9g", path, what, (long long)i, x, y);
    }
}

static void same_grads(karp_model *a, karp_model *b, const char *path)
{
    int np = karp_param_count(a);
    for (int i = 0; i < np; i++) {
        karp_param pa, pb;
        ck_assert_int_eq(karp_param_get(a, i, &pa), 0);
        ck_assert_int_eq(karp_param_get(b, i, &pb), 0);
        same(pa.grad, pb.grad, pa.size, pa.name, path);
        same(pa.data, pb.data, pa.size, pa.name, path);
    }
}

START_TEST(jit_equivalence)
{
    const char *path = examples.gl_pathv[_i];
    karp_model *m[2] = {jit(path, true), jit(path, false)};
    karp_info info;
    ck_assert_int_eq(karp_model_info(m[0], &info), 0);
    int64_t nin = BATCH * info.input_size, nout = BATCH * info.output_size;
    float *x = malloc((size_t)nin * 4), *dy = malloc((size_t)nout * 4);
    float *y[2] = {malloc((size_t)nout * 4), malloc((size_t)nout * 4)};
    float *dx[2] = {malloc((size_t)nin * 4), malloc((size_t)nin * 4)};
    void *target = malloc((size_t)nout * 4);
    float *y2 = malloc((size_t)nout * 4);
    rng = 777u + (unsigned)_i;
    for (int64_t i = 0; i < nin; i++)
        x[i] = (float)(pick(2001) - 1000) / 1000.0f;
    for (int64_t i = 0; i < nout; i++) {
        dy[i] = (float)(pick(2001) - 1000) / 1000.0f;
        if (info.target_labels)
            ((int32_t *)target)[i] = pick((int)info.output_size);
        else
            ((float *)target)[i] = (float)pick(1001) / 1000.0f;
    }
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(karp_infer(m[k], x, BATCH, y[k]), 0);
    same(y[0], y[1], nout, "karp_infer output", path);

    if (!info.no_train_reason) {
        /* forward, an infer in between (its own workspace), backward twice */
        for (int k = 0; k < 2; k++) {
            ck_assert_int_eq(karp_forward(m[k], x, BATCH, y[k]), 0);
            ck_assert_int_eq(karp_infer(m[k], x, BATCH, y2), 0);
            ck_assert_int_eq(karp_backward(m[k], dy, dx[k]), 0);
        }
        same(y[0], y[1], nout, "karp_forward output", path);
        same(dx[0], dx[1], nin, "dx", path);
        same_grads(m[0], m[1], path);
        for (int k = 0; k < 2; k++)
            ck_assert_int_eq(karp_backward(m[k], dy, NULL), 0);
        same_grads(m[0], m[1], path);
        for (int k = 0; k < 2; k++)
            ck_assert_int_eq(karp_zero_gradients(m[k]), 0);
    }
    if (info.has_train) {
        for (int step = 0; step < 5; step++) {
            float loss[2];
            for (int k = 0; k < 2; k++)
                ck_assert_int_eq(karp_train_step(m[k], x, target, BATCH, &loss[k]), 0);
            ck_assert_msg(isfinite(loss[0]), "%s: loss %g", path, loss[0]);
            same(&loss[0], &loss[1], 1, "loss", path);
        }
        same_grads(m[0], m[1], path);
        for (int k = 0; k < 2; k++)
            ck_assert_int_eq(karp_infer(m[k], x, BATCH, y[k]), 0);
        same(y[0], y[1], nout, "karp_infer after training", path);
    }
    printf("%s: planned and unplanned agree (worst relative difference %.3g)\n", path, worst_rel);
    for (int k = 0; k < 2; k++) {
        karp_close(m[k]);
        free(y[k]);
        free(dx[k]);
    }
    free(x), free(dy), free(target), free(y2);
}
END_TEST

static Suite *memplan_suite(void)
{
    find_examples();
    Suite *s = suite_create("memplan");
    TCase *tc = tcase_create("plan");
    tcase_add_test(tc, examples_checked);
    tcase_add_test(tc, workspace_halved);
    tcase_add_test(tc, report);
    tcase_add_test(tc, random_graphs_checked);
    suite_add_tcase(s, tc);
    tc = tcase_create("jit");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, jit_equivalence, 0, (int)examples.gl_pathc);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    int rc = kp_test_main(memplan_suite(), CK_FORK_GETENV);
    globfree(&examples);
    return rc;
}
