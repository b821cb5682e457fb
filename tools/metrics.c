/*
 * Loss and accuracy on the host.  The generated train_step computes its
 * own loss; the test pass runs karp_infer, which returns the model's
 * output (logits for cross_entropy and bce_logits, probabilities for
 * bce), so the loss of those outputs is computed here with the reference
 * kernels — one definition, shared by `karpc train` and `karpc eval`.
 */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/ref/ref.h"
#include "cli.h"

static KpHostLoss host_loss(const char *name)
{
    static const struct {
        const char *name;
        KpHostLoss loss;
    } table[] = {{"cross_entropy", KP_HOST_CROSS_ENTROPY},
                 {"bce", KP_HOST_BCE},
                 {"bce_logits", KP_HOST_BCE_LOGITS},
                 {"mse", KP_HOST_MSE}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(name, table[i].name) == 0)
            return table[i].loss;
    return KP_HOST_NONE;
}

int kp_cli_task_init(KpTask *t, const karp_info *info, const KpDataset *ds, char *msg, size_t cap)
{
    memset(t, 0, sizeof *t);
    t->loss = host_loss(info->loss);
    t->out = info->output_size;
    t->labels = info->target_labels;
    t->threshold = t->loss == KP_HOST_BCE_LOGITS ? 0.0f : 0.5f;
    if (ds->labels && t->out > 1 && t->out == ds->nclasses)
        t->acc = KP_ACC_ARGMAX;
    else if (ds->labels && t->out == 1 && ds->nclasses <= 2)
        t->acc = KP_ACC_THRESHOLD;
    if (t->loss == KP_HOST_NONE)
        return 0;
    if (t->labels) {
        if (!ds->labels) {
            snprintf(msg, cap, "the model's loss %s needs class labels, the dataset has none",
                     info->loss);
            return -1;
        }
        if (ds->nclasses > t->out) {
            snprintf(msg, cap, "the dataset has %d classes, the model's output only %lld",
                     ds->nclasses, (long long)t->out);
            return -1;
        }
        return 0;
    }
    if (ds->labels && ds->nclasses == t->out && t->out > 1) {
        t->onehot = 1;
    } else if (ds->labels && t->out == 1 && ds->nclasses <= 2) {
        t->onehot = 1;   /* one output: the label 0 or 1 is the target */
    } else if (!ds->targets || t->out != 1) {
        snprintf(msg, cap, "the model's output has %lld floats; the dataset has %d classes%s",
                 (long long)t->out, ds->nclasses,
                 ds->targets ? " and one target per sample" : " and no float targets");
        return -1;
    }
    return 0;
}

const void *kp_cli_target(const KpTask *t, const int32_t *labels, const float *targets, int64_t n,
                          float *scratch)
{
    if (t->labels)
        return labels;
    if (!t->onehot)
        return targets;
    memset(scratch, 0, (size_t)(n * t->out) * sizeof *scratch);
    for (int64_t i = 0; i < n; i++) {
        if (t->out == 1)
            scratch[i] = (float)labels[i];
        else
            scratch[i * t->out + labels[i]] = 1.0f;
    }
    return scratch;
}

double kp_cli_loss(const KpTask *t, const float *y, const void *target, int64_t n)
{
    int64_t count = n * t->out;
    switch (t->loss) {
    case KP_HOST_CROSS_ENTROPY:
        return kp_ref_cross_entropy_forward(y, target, n, t->out);
    case KP_HOST_BCE:
        return kp_ref_bce_forward(y, target, count);
    case KP_HOST_BCE_LOGITS:
        return kp_ref_bce_logits_forward(y, target, count);
    case KP_HOST_MSE:
        return kp_ref_mse_forward(y, target, count);
    case KP_HOST_NONE:
        break;
    }
    return 0;
}

void kp_cli_loss_grad(const KpTask *t, float *dy, const float *y, const void *target, int64_t n)
{
    int64_t count = n * t->out;
    switch (t->loss) {
    case KP_HOST_CROSS_ENTROPY:
        kp_ref_cross_entropy_backward(dy, y, target, n, t->out);
        return;
    case KP_HOST_BCE:
        kp_ref_bce_backward(dy, y, target, count);
        return;
    case KP_HOST_BCE_LOGITS:
        kp_ref_bce_logits_backward(dy, y, target, count);
        return;
    case KP_HOST_MSE:
        kp_ref_mse_backward(dy, y, target, count);
        return;
    case KP_HOST_NONE:
        break;
    }
    memset(dy, 0, (size_t)count * sizeof *dy);
}

int kp_cli_predict(const KpTask *t, const float *y)
{
    if (t->out == 1)
        return y[0] > t->threshold;
    int best = 0;
    for (int64_t i = 1; i < t->out; i++)
        if (y[i] > y[best])
            best = (int)i;
    return best;
}

int64_t kp_cli_correct(const KpTask *t, const float *y, const int32_t *labels, int64_t n)
{
    if (t->acc == KP_ACC_NONE)
        return 0;
    int64_t right = 0;
    for (int64_t i = 0; i < n; i++)
        right += kp_cli_predict(t, y + i * t->out) == labels[i];
    return right;
}

int kp_cli_test(karp_model *m, const KpTask *t, const KpDataset *ds, int64_t batch, int32_t *pred,
                KpTestResult *r)
{
    memset(r, 0, sizeof *r);
    float *y = malloc((size_t)(batch * t->out) * sizeof *y);
    float *scratch = malloc((size_t)(batch * t->out) * sizeof *scratch);
    if (!y || !scratch) {
        free(y);
        free(scratch);
        kp_cli_fail("out of memory");
        return -1;
    }
    double t0 = kp_cli_now(), loss = 0;
    int64_t right = 0;
    int rc = 0;
    for (int64_t i = 0; i < ds->count && rc == 0; i += batch) {
        int64_t n = ds->count - i < batch ? ds->count - i : batch;
        if (karp_infer(m, ds->x + i * ds->sample_size, n, y) != 0) {
            kp_cli_fail("%s", karp_last_error());
            rc = -1;
            break;
        }
        const int32_t *labels = ds->labels ? ds->labels + i : NULL;
        const float *targets = ds->targets ? ds->targets + i : NULL;
        if (t->loss != KP_HOST_NONE)
            loss += kp_cli_loss(t, y, kp_cli_target(t, labels, targets, n, scratch), n) * (double)n;
        right += kp_cli_correct(t, y, labels, n);
        for (int64_t j = 0; pred && j < n; j++)
            pred[i + j] = kp_cli_predict(t, y + j * t->out);
    }
    r->seconds = kp_cli_now() - t0;
    r->count = ds->count;
    r->loss = loss / (double)ds->count;
    r->acc = t->acc == KP_ACC_NONE ? -1 : 100.0 * (double)right / (double)ds->count;
    free(y);
    free(scratch);
    return rc;
}

void kp_cli_format_test(char *buf, size_t cap, const KpTestResult *r)
{
    int n = snprintf(buf, cap, "test loss %.4f", r->loss);
    if (r->acc >= 0 && n >= 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, " acc %.2f%%", r->acc);
}
