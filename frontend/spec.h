/*
 * spec.h — a model file, parsed and validated.
 *
 * The frontend reads model.json (version 1, see docs/model-format.md) into
 * a KpModelSpec: every attribute checked and defaulted, every layer named.
 * The spec is then lowered to the graph IR by kp_frontend_lower().
 *
 * Ownership: the spec and all its strings live in the arena passed in.
 */
#ifndef KP_SPEC_H
#define KP_SPEC_H

/* The most layers (or graph nodes) karpc compiles: code generation time
 * grows with the count (docs/reliability.md, Limits). */
#define KP_MAX_LAYERS 1000

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../ir/arena.h"
#include "../ir/diag.h"
#include "../ir/ir.h"

typedef enum KpLayerType {
    KP_LAYER_DENSE,
    KP_LAYER_CONV2D,
    KP_LAYER_CONV2D_TRANSPOSE,
    KP_LAYER_MAXPOOL2D,
    KP_LAYER_AVGPOOL2D,
    KP_LAYER_BATCHNORM,
    KP_LAYER_DROPOUT,
    KP_LAYER_RESHAPE,
    KP_LAYER_MASKING,
    KP_LAYER_FLATTEN,
    KP_LAYER_RELU,
    KP_LAYER_SIGMOID,
    KP_LAYER_TANH,
    KP_LAYER_SOFTMAX,
    KP_LAYER_LEAKY_RELU,
    KP_LAYER_ADD,
    KP_LAYER_CONCAT,
    KP_LAYER_COUNT
} KpLayerType;

typedef enum KpAct {
    KP_ACT_NONE,
    KP_ACT_RELU,
    KP_ACT_SIGMOID,
    KP_ACT_TANH,
    KP_ACT_SOFTMAX,
    KP_ACT_LEAKY_RELU
} KpAct;

typedef enum KpLoss { KP_LOSS_NONE, KP_LOSS_CROSS_ENTROPY, KP_LOSS_BCE, KP_LOSS_BCE_LOGITS, KP_LOSS_MSE } KpLoss;
typedef enum KpOptim { KP_OPTIM_NONE, KP_OPTIM_SGD, KP_OPTIM_MOMENTUM, KP_OPTIM_ADAM } KpOptim;

typedef struct KpLayerSpec {
    KpLayerType type;
    const char *name;        /* given, or "<type><index>" ("dense1") */
    const char *where;       /* "layers[3]" or "nodes[2]" */
    int line;                /* line of the layer's '{' in the file, 0 if unknown */
    int ninputs;             /* graph form: names of the inputs ("input" = model input) */
    const char **inputs;     /* chain form: 0 / NULL (the previous layer) */
    KpAttrs attr;            /* the op attributes, defaults filled in */
    KpAct activation;        /* fused activation of dense/conv2d/conv2d_transpose */
    float act_alpha;         /* slope when activation is leaky_relu (0.01) */
    bool has_init;           /* "init" given */
    KpInit init;             /* he, xavier or zeros */
} KpLayerSpec;

typedef struct KpAugmentSpec {
    const char *type;        /* "hflip", "random_crop", "rotate", "noise" */
    int64_t padding;         /* random_crop */
    float degrees;           /* rotate */
    float std;               /* noise */
} KpAugmentSpec;

typedef struct KpTrainSpec {
    bool present;
    int64_t epochs;          /* 0 if not given */
    int nmean, nstd;         /* normalize: per channel (or one for all) */
    float mean[16], std[16];
    int naugment;
    KpAugmentSpec *augment;
} KpTrainSpec;

typedef struct KpModelSpec {
    const char *file;        /* the path as given, used in every message */
    const char *name;        /* C identifier; default: the file's base name made an identifier */
    int input_rank;
    int64_t input_shape[KP_MAX_RANK];
    bool graph_form;         /* "nodes" + "output" rather than "layers" */
    int nlayers;             /* at most KP_MAX_LAYERS in the "layers" form; the parser takes
                                more nodes, which kp_build_program then refuses */
    KpLayerSpec *layers;
    const char *output;      /* graph form: the output node's name */
    KpLoss loss;
    KpOptim optimizer;
    float lr, weight_decay, beta, beta1, beta2, eps;
    int64_t batch;           /* default 64 */
    uint64_t seed;           /* default 0 */
    KpTrainSpec train;
} KpModelSpec;

/* Parse and validate a model file.  On failure returns -1 with one
 * diagnostic in d, e.g.
 *   "m.json:3:14: JSON syntax error: ..."  or
 *   "m.json: layers[3] (conv2d): 'kernel' must be a positive integer or [h,w], got -1" */
int kp_frontend_parse_file(const char *path, KpArena *a, KpModelSpec **out, KpDiag *d);
/* The same from text in memory; file is the name used in messages. */
int kp_frontend_parse_text(const char *file, const char *text, size_t len, KpArena *a,
                           KpModelSpec **out, KpDiag *d);

/* Build the inference graph of a spec: layers become nodes, fused
 * activations become separate nodes, parameters are created with their
 * PyTorch names and initializers, shapes are inferred and verified.
 * Shape errors are reported against the layer ("m.json: layers[2] (dense1):
 * input must be rank 1 (use flatten), got [N,1,28,28]"). */
int kp_frontend_lower(const KpModelSpec *s, KpGraph *g, KpDiag *d);

const char *kp_layer_type_name(KpLayerType t);
const char *kp_loss_name(KpLoss l);
const char *kp_optim_name(KpOptim o);

#endif
