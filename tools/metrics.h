/*
 * metrics.h — loss and accuracy of a model's outputs, computed on the host
 * with the runtime's reference loss kernels (runtime/ref/ref.h), the same
 * way for `karpc train` and `karpc eval`; and the test pass both run.
 */
#ifndef KP_METRICS_H
#define KP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/data.h"
#include "karp.h"

typedef enum KpHostLoss {
    KP_HOST_NONE,
    KP_HOST_CROSS_ENTROPY,
    KP_HOST_BCE,
    KP_HOST_BCE_LOGITS,
    KP_HOST_MSE
} KpHostLoss;

typedef enum KpAccuracy {
    KP_ACC_NONE,            /* no labels, or outputs that are not class scores */
    KP_ACC_ARGMAX,          /* the largest of nclasses outputs is the label */
    KP_ACC_THRESHOLD        /* one output: above threshold means class 1 */
} KpAccuracy;

/* What a model's outputs mean against a dataset, and its training target. */
typedef struct KpTask {
    KpHostLoss loss;
    KpAccuracy acc;
    float threshold;        /* KP_ACC_THRESHOLD: 0.5 for probabilities, 0 for logits */
    int64_t out;            /* floats per output sample */
    int labels;             /* the target is int32 labels [n] */
    int onehot;             /* the target is floats made one-hot from the labels */
} KpTask;

/* Match model and dataset.  0, or -1 with a one-line reason in msg
 * (e.g. the model's output has 3 floats, the dataset 10 classes). */
int kp_cli_task_init(KpTask *t, const karp_info *info, const KpDataset *ds, char *msg, size_t cap);

/* The training target of n samples with these labels (may be NULL) and
 * float targets (may be NULL): the labels themselves, their one-hot
 * floats written into scratch (n * t->out floats), or the float targets. */
const void *kp_cli_target(const KpTask *t, const int32_t *labels, const float *targets, int64_t n,
                          float *scratch);

/* Mean loss of n outputs y against target (int32 labels or floats, as
 * t->labels says); 0 for a model without a loss. */
double kp_cli_loss(const KpTask *t, const float *y, const void *target, int64_t n);

/* dy (n * t->out floats) = the gradient of kp_cli_loss with respect to y. */
void kp_cli_loss_grad(const KpTask *t, float *dy, const float *y, const void *target, int64_t n);

/* How many of n outputs y are right about their labels (0 without
 * accuracy). */
int64_t kp_cli_correct(const KpTask *t, const float *y, const int32_t *labels, int64_t n);

/* The class one output y says (argmax, or the threshold for one output). */
int kp_cli_predict(const KpTask *t, const float *y);

/* The test pass: karp_infer over all of ds in batches of at most batch.
 * pred (may be NULL) receives each sample's predicted class. */
typedef struct KpTestResult {
    int64_t count;
    double loss;            /* mean over the samples */
    double acc;             /* percent; < 0: no accuracy */
    double seconds;
} KpTestResult;
int kp_cli_test(karp_model *m, const KpTask *t, const KpDataset *ds, int64_t batch, int32_t *pred,
                KpTestResult *r);

/* "test loss 0.4567 acc 84.10%" (without " acc ..." when there is none):
 * the text `karpc train` ends each epoch line with and `karpc eval`
 * prints, so that the two compare as strings. */
void kp_cli_format_test(char *buf, size_t cap, const KpTestResult *r);

#endif
