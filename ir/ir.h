/*
 * ir.h — the graph IR.
 *
 * A KpGraph is a list of nodes in topological order.  Each node has input
 * values and one output value (a node fusion merged from several has
 * further ones, aux); a value is a tensor (dtype, shape, role) that knows
 * its producer and, after kp_fill_uses(), its users.  Shapes carry a
 * symbolic batch: dims[0] == KP_DIM_N for activations.
 *
 * Ownership: a graph, its nodes, values and strings live in the graph's
 * arena (g->arena) and are freed together by kp_graph_free().  The arena
 * belongs to the graph.
 *
 *     input x [N,1,28,28]
 *        |
 *     flatten -> %0 [N,784]      dense1.weight [128,784]  dense1.bias [128]
 *        |             \______________|_____________________/
 *     dense -> %1 [N,128]
 *        |
 *     relu  -> %2 [N,128]  ...
 */
#ifndef KP_IR_H
#define KP_IR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../include/karp.h"
#include "arena.h"
#include "diag.h"

#define KP_MAX_RANK 4
#define KP_MAX_IN 8
#define KP_DIM_N (-1)          /* the symbolic batch dimension */

typedef enum KpOp {
#define O(op, ...) KP_OP_##op,
#include "ops.def"
#undef O
    KP_OP_COUNT
} KpOp;

/* Fusion classes, ordered: merging two classes gives their max. */
typedef enum KpFuseKind {
    KP_FUSE_ELEMWISE,   /* one output element from the same input element */
    KP_FUSE_INJECTIVE,  /* a pure re-indexing (reshape, concat) */
    KP_FUSE_REDUCE,     /* reduces along an axis (softmax) */
    KP_FUSE_GEMM,       /* gemm/conv: can take elementwise epilogues */
    KP_FUSE_OPAQUE      /* fuses with nothing */
} KpFuseKind;

typedef enum KpDtype { KP_F32, KP_I32 } KpDtype;

typedef enum KpRole {
    KP_ROLE_INPUT,      /* the model input */
    KP_ROLE_PARAM,      /* a trainable or running-statistics parameter */
    KP_ROLE_GRAD,
    KP_ROLE_OPTSTATE,
    KP_ROLE_ACT,        /* an activation (transient) */
    KP_ROLE_CONST
} KpRole;

/* Where a value lives at run time (set by the memory plan). */
typedef enum KpStorage {
    KP_STORE_NONE,      /* not planned yet */
    KP_STORE_INPUT,     /* the caller's x */
    KP_STORE_OUTPUT,    /* the caller's y */
    KP_STORE_PARAM,     /* offset floats into the parameter slab */
    KP_STORE_WORKSPACE, /* offset bytes into the workspace */
    KP_STORE_TARGET,    /* the caller's target (int32 labels or floats) */
    KP_STORE_GRAD,      /* offset floats into the gradient slab: the same
                           offset as the parameter (grad_of); kernels
                           writing it accumulate (+=) */
    KP_STORE_DX,        /* the caller's input gradient (karp_backward) */
    KP_STORE_PREP       /* offset floats into the prepared slab (g->prep_floats):
                           values of PREPARE nodes, kept by the model between calls */
} KpStorage;

/* When a node of a train graph runs (the entry points of DESIGN's ABI):
 *   train_step = FORWARD, LOSS, BACKWARD, UPDATE
 *   forward    = FORWARD                (then the output copied to y)
 *   backward   = dy copied into d_output, BACKWARD, and INPUT_GRAD if dx
 *   apply      = UPDATE
 * Inference graphs have only FORWARD nodes. */
typedef enum KpPhase {
    KP_PHASE_FORWARD,
    KP_PHASE_LOSS,        /* the loss and its gradient d_output */
    KP_PHASE_BACKWARD,    /* gradients that some parameter gradient needs */
    KP_PHASE_INPUT_GRAD,  /* gradients only the input gradient needs */
    KP_PHASE_UPDATE,      /* the optimizer step */
    KP_PHASE_PREPARE      /* inference graphs: computed from the parameters once,
                             when they change (folded batchnorm, packed weights),
                             by the prepare entry; FORWARD nodes read the result */
} KpPhase;

/* Optimizer hyperparameters (DESIGN.md's formulas). */
typedef struct KpOptimHyper {
    float lr, weight_decay;     /* sgd */
    float beta;                 /* momentum */
    float beta1, beta2, eps;    /* adam */
} KpOptimHyper;

/* Parameter initializers (same numbers as KARP_INIT_* in karp_abi.h). */
typedef enum KpInit {
    KP_INIT_ZEROS = 0,
    KP_INIT_ONES = 1,
    KP_INIT_UNIFORM_FAN_IN = 2,
    KP_INIT_HE = 3,
    KP_INIT_XAVIER = 4
} KpInit;

typedef struct KpNode KpNode;

/* An elementwise op applied to a node's result before it is stored (the
 * fusion pass): the running value is the op's first operand, the others
 * are the node's inputs in[arg[0..nargs)], each shaped like the node's
 * output.  op is a KP_FUSE_ELEMWISE op of ops.def: relu, leaky_relu,
 * sigmoid, tanh, add, mul, relu_grad, leaky_relu_grad, sigmoid_grad,
 * tanh_grad.  alpha is leaky_relu's slope.  A node with epilogues
 * computes out = epi[nepi-1](... epi[0](op(in...)) ...), and a node
 * whose output accumulates (a gradient slot) adds that final result. */
#define KP_MAX_EPI 6
#define KP_MAX_AUX 2            /* outputs of a node besides out */
typedef struct KpEpilogue {
    KpOp op;
    int nargs;
    int arg[KP_MAX_IN - 1];
    float alpha;
} KpEpilogue;

/* A loss fused into the node that computes its prediction (fusion.c):
 * op (cross_entropy) over the rows of the node's output and the target
 * in[target], into aux[0] (the loss, g->loss_value) and aux[1] (its
 * gradient grad_op, g->d_output).  That is LOSS-phase work in a FORWARD
 * node: the entries that run the LOSS phase (train_step) call the node's
 * function with it, the others (karp_forward's) a function without it
 * (backend/codegen.c). */
typedef struct KpFusedLoss {
    bool on;
    KpOp op, grad_op;
    int target;
} KpFusedLoss;

typedef struct KpValue {
    int id;                     /* index in g->values */
    const char *name;           /* parameter name ("dense1.weight"), else NULL */
    KpDtype dtype;
    KpRole role;
    int rank;
    int64_t dims[KP_MAX_RANK];  /* dims[0] may be KP_DIM_N */
    KpNode *producer;           /* NULL for the input and parameters */
    int nusers;                 /* filled by kp_fill_uses() */
    KpNode **users;
    /* parameters */
    struct KpValue *grad_of;    /* role GRAD: the parameter it is the gradient of */
    KpInit init;
    int64_t fan_in, fan_out;
    bool frozen;                /* not trained: running statistics (batchnorm's
                                   running_mean/var); laid out after the trained ones */
    /* memory plan */
    KpStorage storage;
    int64_t offset;             /* floats (PARAM) or bytes (WORKSPACE) */
} KpValue;

typedef enum KpPadMode { KP_PAD_EXPLICIT, KP_PAD_SAME, KP_PAD_VALID } KpPadMode;

/* Attributes of every op, one flat struct; each op reads its own. */
typedef struct KpAttrs {
    int64_t units;              /* dense: out features */
    int64_t filters;            /* conv2d, conv2d_transpose */
    int64_t kernel[2];          /* conv kernel, pool size */
    int64_t stride[2];
    int64_t padding[2];         /* explicit padding (after "same" is resolved) */
    KpPadMode pad_mode;
    int64_t dilation[2];
    int64_t output_padding[2];
    bool has_bias;
    float alpha;                /* leaky_relu slope */
    float eps, momentum;        /* batchnorm */
    float rate;                 /* dropout */
    float value;                /* masking */
    int axis;                   /* concat, slice: per-sample axis (0 = channels) */
    int64_t slice_offset;       /* slice: the part [offset, offset+size) along axis */
    int64_t slice_size;
    int reshape_rank;           /* reshape: one sample's new shape */
    int64_t reshape_dims[KP_MAX_RANK];
    KpOptimHyper optim;         /* *_update */
    int64_t panel;              /* pack_panels, dense_packed: floats per panel */
    int64_t wstride;            /* conv2d, pad_rows: floats between the rows of a weight
                                   padded by passes/layout.c, [F, wstride]; 0: the
                                   weight is [F,C,kh,kw] */
} KpAttrs;

struct KpNode {
    int id;                     /* position in g->nodes */
    int key;                    /* stable identity: numbered at creation, kept when passes
                                   remove or renumber nodes; keys the random streams
                                   (dropout masks), so they do not depend on the passes */
    KpOp op;
    const char *name;           /* the layer's name ("dense1") */
    const char *where;          /* JSON path for diagnostics ("layers[2]") */
    int nin;
    KpValue *in[KP_MAX_IN];
    KpValue *out;               /* the output (epilogues apply to it) */
    int naux;                   /* further outputs the same kernel writes: nodes
                                   merged by fusion.c (batchnorm_fwd's statistics,
                                   batchnorm_bwd's parameter gradients, a pooling
                                   gradient's folded bias gradient) */
    KpValue *aux[KP_MAX_AUX];
    KpAttrs attr;
    KpPhase phase;              /* FORWARD unless autodiff says otherwise */
    int nepi;                   /* fused elementwise epilogues, in order */
    KpEpilogue epi[KP_MAX_EPI];
    KpFusedLoss loss;           /* a loss fused after the epilogues (on: false if none) */
    int group;                  /* horizontal fusion (passes/group.c): the nodes of one
                                   group > 0 are adjacent, independent, of one phase (or
                                   BACKWARD first, then INPUT_GRAD: kp_node_run_phase),
                                   and run as one kernel; 0: a kernel of its own */
};

typedef struct KpGraph {
    KpArena arena;              /* owns everything below */
    const char *name;           /* the model's name, a C identifier */
    const char *file;           /* the model file, for diagnostics */
    int nnodes, cap_nodes;
    KpNode **nodes;             /* topological order */
    int nvalues, cap_values;
    KpValue **values;
    int next_key;               /* the key the next new node gets */
    KpValue *input;
    KpValue *output;
    int64_t max_batch;
    uint64_t seed;
    const char *loss;           /* "none", "cross_entropy", ... */
    const char *optimizer;      /* "none", "sgd", "momentum", "adam" */
    KpOptimHyper optim;         /* from the model file */
    /* the model file's "train" section, carried into the descriptor */
    int64_t train_epochs;
    int norm_nmean, norm_nstd;
    float norm_mean[16], norm_std[16];
    int naugment;               /* train.augment, in order (KARP_AUG_* and its value) */
    karp_augment augment[64];
    bool training;              /* a train graph: lowered in training mode, then autodiff */
    /* train graphs, set by autodiff */
    KpValue *target;            /* the caller's target (NULL without a loss) */
    KpValue *loss_value;        /* the mean loss, a scalar (NULL without a loss); named
                                   loss_value because `loss` is the loss's name above */
    KpValue *d_output;          /* gradient of the output: from the loss, or karp_backward's dy */
    KpValue *d_input;           /* gradient of the input (KP_STORE_DX) */
    int opt_slots;              /* optimizer state floats per parameter float: 0, 1 or 2 */
    /* set by the memory plan */
    int64_t param_floats;       /* the parameter slab (also the gradient slab) */
    int64_t trainable_floats;   /* parameters [0, trainable_floats) are trained;
                                   running statistics come after */
    int64_t workspace_bytes;
    bool ws_reuse;              /* workspace ranges shared by values whose lives do not
                                   meet (false with --no-memplan: every value's bytes
                                   survive the call, which the numerics check needs) */
    int64_t prep_floats;        /* the prepared slab (KP_STORE_PREP), 0 if none */
} KpGraph;

/* A new empty graph (NULL when out of memory).  Free with kp_graph_free. */
KpGraph *kp_graph_new(void);
void kp_graph_free(KpGraph *g);

/* A new value with the given shape; dims are copied. */
KpValue *kp_value_new(KpGraph *g, KpRole role, KpDtype dt, int rank, const int64_t *dims);
/* A new parameter value named name (copied into the arena). */
KpValue *kp_param_new(KpGraph *g, const char *name, int rank, const int64_t *dims, KpInit init,
                      int64_t fan_in, int64_t fan_out);
/* Append a node; its output value (shape rank 0, to be inferred) is
 * created, role ACT.  Inputs are copied. */
KpNode *kp_node_new(KpGraph *g, KpOp op, const char *name, const char *where, int nin,
                    KpValue *const *in);

/* n's outputs: out, then aux[0 .. naux). */
static inline int kp_node_nout(const KpNode *n)
{
    return 1 + n->naux;
}
static inline KpValue *kp_node_output(const KpNode *n, int i)
{
    return i == 0 ? n->out : n->aux[i - 1];
}

/* Whether v is a parameter the optimizer trains (role PARAM, not frozen). */
bool kp_value_trainable(const KpValue *v);

/* The phase among whose nodes n runs: its own, except for an INPUT_GRAD
 * node in a group whose first member is a BACKWARD node (passes/group.c):
 * that group runs among the BACKWARD nodes, and its INPUT_GRAD members
 * only in an entry that computes dx. */
KpPhase kp_node_run_phase(const KpGraph *g, const KpNode *n);
/* The id just past the last node of n's group (n->id + 1 outside a group):
 * a group's members are adjacent. */
int kp_group_end(const KpGraph *g, const KpNode *n);

/* Recompute every value's users from the nodes. */
void kp_fill_uses(KpGraph *g);

/* Op table look-ups. */
const char *kp_op_name(KpOp op);
KpFuseKind kp_op_kind(KpOp op);
/* Ops whose output is their input's floats reinterpreted (flatten, reshape,
 * inference dropout): the memory plan gives them their input's storage. */
bool kp_op_is_view(KpOp op);
int kp_op_nin(KpOp op);        /* -1: variadic */

/* Elements of one sample of v (the product of dims[1..]) for values whose
 * dims[0] is N; all elements for values without N (parameters, their
 * gradients, the loss scalar). */
int64_t kp_value_sample_size(const KpValue *v);
int64_t kp_value_numel(const KpValue *v, int64_t n);   /* with N = n */

/* v's shape as text, "[N,1,28,28]" ("[]" for rank 0), into buf (truncated
 * to size); returns buf. */
char *kp_shape_str(const KpValue *v, char *buf, size_t size);

/* Infer n's output shape with the op's shape rule (ops.def), from the
 * shapes of its inputs.  Returns 0, or -1 with a diagnostic against the
 * layer ("m.json: layers[1] (dense1): ..."). */
int kp_node_infer_shape(KpGraph *g, KpNode *n, KpDiag *d);

/* Printers.  The IR text is stable: same graph, same bytes. */
void kp_print_ir(FILE *f, const KpGraph *g);
void kp_print_dot(FILE *f, const KpGraph *g);

/* Run the graph with the reference kernels of runtime/ref/ (the test
 * oracle).  params is the slab laid out by the memory plan; x holds n
 * input samples, y receives n output samples.  Returns 0, or -1 with a
 * diagnostic for an op that has no reference execution yet. */
int kp_interp_run(const KpGraph *g, const float *params, const float *x, int64_t n, float *y,
                  KpDiag *d);

/* Run the nodes of a train graph whose phase is in phases (a mask of
 * 1u << KP_PHASE_*) with the reference kernels, the way the generated
 * entry points do (see KpPhase).  Buffers as in karp_abi.h: params, grads
 * (param_floats each), opt (opt_slots * param_floats); target is int32
 * labels or floats; dy replaces the loss gradient when the LOSS phase is
 * not run; dx (may be NULL) receives the input gradient; y (may be NULL)
 * the output; *loss (may be NULL) the loss; step counts optimizer steps
 * from 1.  Gradients accumulate into grads; the UPDATE phase zeroes them
 * after the step.  seed is the call's random stream (dropout masks: each
 * dropout_mask node draws from kp_ref_dropout_node_seed(seed, node key)); a
 * backward must get its forward's seed.  Batchnorm's running statistics
 * (in params) are updated only when phases include FORWARD. */
typedef struct KpInterpTrain {
    unsigned phases;
    float *params, *grads, *opt;
    const float *x;
    const void *target;
    const float *dy;
    float *dx, *y;
    float *loss;
    int64_t n, step;
    uint64_t seed;             /* the call's random stream (dropout), as the entries get it */
} KpInterpTrain;
int kp_interp_train(const KpGraph *g, const KpInterpTrain *t, KpDiag *d);

#endif
