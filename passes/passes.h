/*
 * passes.h — the graph passes.
 *
 * Every pass has one signature: the graph in, the graph changed in place,
 * diagnostics out; it returns 0 or -1.  kp_pipeline_infer() runs them, in
 * plain order, for an inference build; with o->verify set it runs the
 * verifier after each pass.
 */
#ifndef KP_PASSES_H
#define KP_PASSES_H

#include <stdbool.h>

#include "../ir/ir.h"

/* What the pass manager records per pass run, for --stats. */
#define KP_PASS_LOG_MAX 32
typedef struct KpPassLog {
    int n;
    struct {
        char pass[24];          /* "fusion" */
        char graph[8];          /* "infer" or "train" */
        double ms;              /* wall time of the pass */
        char what[240];         /* what it did, one line ("fused 5 epilogues into 3 nodes") */
    } e[KP_PASS_LOG_MAX];
} KpPassLog;

typedef struct KpPassOpts {
    bool verify;            /* run kp_pass_verify after every pass */
    bool fuse;              /* --no-fuse clears it */
    bool group;             /* horizontal fusion (the group pass); --no-group clears it */
    bool layout;            /* --no-layout clears it */
    bool memplan;           /* --no-memplan clears it: every value its own range, no reuse */
    bool fold;              /* --no-fold clears it: no constant or batchnorm folding */
    const char *dump_after; /* print the IR after this pass (NULL: none) */
    FILE *dump_to;          /* where (stdout if NULL) */
    bool dump_dot;          /* dump as Graphviz rather than text */
    KpPassLog *log;         /* per-pass time and summary (NULL: not kept) */
} KpPassOpts;

void kp_pass_opts_init(KpPassOpts *o);

/* A pass says what it did (printf-style, one line, no newline): kept in
 * o->log for the pass being run; a no-op without a log. */
void kp_pass_report(const KpPassOpts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

typedef int (*KpPassFn)(KpGraph *g, const KpPassOpts *o, KpDiag *d);

/* Shape inference: every value's shape from the op table's shape rules. */
int kp_pass_shapes(KpGraph *g, const KpPassOpts *o, KpDiag *d);
/* Structural checks: topological order, input counts, shapes known, users
 * consistent.  A failure here is a karpc bug, reported as a diagnostic. */
int kp_pass_verify(KpGraph *g, const KpPassOpts *o, KpDiag *d);
/* Memory plan: parameters get offsets in the parameter slab (64-byte
 * aligned; trainable ones first, then running statistics), activations
 * offsets in the workspace, views (flatten, reshape, dropout in inference)
 * share their input's storage, the output is the caller's y.  In a train
 * graph: parameter gradients KP_STORE_GRAD at their parameter's offset,
 * the target KP_STORE_TARGET, the input gradient KP_STORE_DX, the output
 * stays in the workspace (loss and backward read it).  With o->memplan,
 * workspace values whose live ranges (node order, widened for what the
 * entry points do between nodes: docs/passes-memplan.md) do not meet
 * share bytes, and elementwise maps write over an input that dies at
 * them; without it every value has its own range.  PREPARE nodes are not
 * placed here.  Sets g->param_floats, g->trainable_floats and
 * g->workspace_bytes; reports "workspace X bytes (unplanned Y), Z values
 * share ranges, W in place".  The two graphs of one model get the same
 * parameter layout. */
int kp_pass_memplan(KpGraph *g, const KpPassOpts *o, KpDiag *d);

/* Reverse-mode autodiff, graph to graph: on a train graph (g->training,
 * shapes inferred) appends the loss and its gradient (when g->loss names
 * one; else d_output is where karp_backward's dy goes), the gradient of
 * every value from each op's gradient rule in reverse order (ops.def's
 * grad column; contributions summed where a value fans out), the
 * gradient of every parameter (role GRAD, grad_of set) and of the input
 * (g->d_input), and the optimizer update (one node over all trainable
 * parameters).  Sets each node's phase and g->target, loss, d_output,
 * d_input, opt_slots. */
int kp_pass_autodiff(KpGraph *g, const KpPassOpts *o, KpDiag *d);

/* simplify (simplify.c): dead-code elimination (nodes whose output
 * nothing reads and that have no side effect), common subexpressions
 * (same op, inputs and attributes), and identities that need no data
 * (a reshape of a reshape, a reshape to the same shape, add of one
 * input).  Always on. */
int kp_pass_simplify(KpGraph *g, const KpPassOpts *o, KpDiag *d);
/* fold (fold.c), inference graphs: batchnorm after conv2d or dense folded
 * into PREPARE nodes that compute the scaled weights and bias once from
 * the parameters; constant folding of values known at compile time.
 * Off with --no-fold. */
int kp_pass_fold(KpGraph *g, const KpPassOpts *o, KpDiag *d);
/* fusion (fusion.c): elementwise consumers become epilogues (KpEpilogue)
 * of their producer when the intermediate value has no other user and
 * both run in the same phase.  Off with --no-fuse. */
int kp_pass_fusion(KpGraph *g, const KpPassOpts *o, KpDiag *d);
/* group (group.c): horizontal fusion.  Orders each phase's nodes by
 * level (one past the deepest node of the phase they read) and gives the
 * kernels of a level that has two or more one group number (KpNode.group):
 * the backend runs a group as one parallel region.  Off with --no-group. */
int kp_pass_group(KpGraph *g, const KpPassOpts *o, KpDiag *d);
/* Bytes of one operand (a weight) from which a kernel is worth a second
 * thread however few its multiply-adds: two cores read its halves from
 * two L2s.  The backend's GEMM plan (kp_gemm_worth_threads) and
 * kp_dense_grad_x_halves below read it from here. */
enum { KP_PAR_MIN_BYTES = 128 << 10 };
/* Whether n, a dense_grad_x of a graph compiled for batch 1 without
 * epilogues, reads a weight large enough to be split by its rows between
 * the threads (backend/emit_grad_dense.c, dense_axpy's halves).  Such a
 * node runs alone, not in a group: a group's shares go to whichever
 * thread comes first, and the halves only pay when the first thread takes
 * the first half of W's rows, as in the layer's forward and update. */
bool kp_dense_grad_x_halves(const KpGraph *g, const KpNode *n);
/* Whether n is large enough at the graph's largest batch to run as a
 * parallel region of its own rather than in a group: its time on one
 * core, estimated from its cost (ir/cost.h), is 100 us or more. */
bool kp_group_too_large(const KpGraph *g, const KpNode *n);
/* layout (layout.c), inference graphs: constant weights repacked once by
 * PREPARE nodes into the layout their kernel reads (packed gemm panels);
 * reorders only where layouts meet.  Off with --no-layout. */
int kp_pass_layout(KpGraph *g, const KpPassOpts *o, KpDiag *d);

/* Kernels (nodes that become a function with a body and run on every call:
 * views and PREPARE nodes excluded) and
 * the bytes all transient values would take unplanned (each its own
 * range at max_batch): the --stats figures. */
int kp_graph_kernel_count(const KpGraph *g);
int64_t kp_graph_transient_bytes(const KpGraph *g);

/* The inference pipeline, after kp_frontend_lower(). */
int kp_pipeline_infer(KpGraph *g, const KpPassOpts *o, KpDiag *d);
/* The training pipeline, after kp_frontend_lower() of a graph with
 * g->training set: shapes, verify, autodiff, verify, memplan, verify. */
int kp_pipeline_train(KpGraph *g, const KpPassOpts *o, KpDiag *d);

#endif
