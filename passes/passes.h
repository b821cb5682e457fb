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

typedef struct KpPassOpts {
    bool verify;            /* run kp_pass_verify after every pass */
    bool fuse;              /* --no-fuse clears it */
    bool layout;            /* --no-layout clears it */
    const char *dump_after; /* print the IR after this pass (NULL: none) */
    FILE *dump_to;          /* where (stdout if NULL) */
    bool dump_dot;          /* dump as Graphviz rather than text */
} KpPassOpts;

void kp_pass_opts_init(KpPassOpts *o);

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
 * stays in the workspace (loss and backward read it).  Sets
 * g->param_floats, g->trainable_floats and g->workspace_bytes.  The two
 * graphs of one model get the same parameter layout. */
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

/* The inference pipeline, after kp_frontend_lower(). */
int kp_pipeline_infer(KpGraph *g, const KpPassOpts *o, KpDiag *d);
/* The training pipeline, after kp_frontend_lower() of a graph with
 * g->training set: shapes, verify, autodiff, verify, memplan, verify. */
int kp_pipeline_train(KpGraph *g, const KpPassOpts *o, KpDiag *d);

#endif
