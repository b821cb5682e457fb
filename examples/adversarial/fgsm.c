/*
 * fgsm.c — the input gradient of a classifier's cross-entropy and the FGSM
 * attack built from it (see fgsm.h).
 */
#include "fgsm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fgsm_init(FgsmModel *f, karp_model *m, int64_t cap, char *err, int errlen)
{
    memset(f, 0, sizeof *f);
    f->m = m;
    f->cap = cap;
    if (karp_model_info(m, &f->info) != 0) {
        snprintf(err, (size_t)errlen, "%s", karp_last_error());
        return -1;
    }
    const karp_info *in = &f->info;
    if (strcmp(in->loss, "cross_entropy") != 0 || !in->has_train) {
        snprintf(err, (size_t)errlen,
                 "%s: FGSM needs a trainable classifier with a cross_entropy loss (loss: %s%s%s)",
                 in->name, in->loss, in->no_train_reason ? "; " : "",
                 in->no_train_reason ? in->no_train_reason : "");
        return -1;
    }
    if (cap > in->max_batch) {
        snprintf(err, (size_t)errlen, "%s: batch %lld above the model's max batch %lld", in->name,
                 (long long)cap, (long long)in->max_batch);
        return -1;
    }
    int64_t nchan = in->normalize_nmean > in->normalize_nstd ? in->normalize_nmean
                                                              : in->normalize_nstd;
    if (nchan > 1 && (in->input_rank != 3 || in->input_shape[0] != nchan)) {
        snprintf(err, (size_t)errlen, "%s: train.normalize has %lld values for input channels %lld",
                 in->name, (long long)nchan, (long long)in->input_shape[0]);
        return -1;
    }
    f->nchan = (int)nchan;
    f->plane = nchan > 0 ? in->input_size / nchan : in->input_size;
    size_t xs = sizeof(float) * (size_t)(cap * in->input_size);
    size_t ys = sizeof(float) * (size_t)(cap * in->output_size);
    f->xn = malloc(xs);
    f->dx = malloc(xs);
    f->logits = malloc(ys);
    f->dy = malloc(ys);
    if (!f->xn || !f->dx || !f->logits || !f->dy) {
        fgsm_free(f);
        snprintf(err, (size_t)errlen, "out of memory");
        return -1;
    }
    return 0;
}

void fgsm_free(FgsmModel *f)
{
    free(f->xn);
    free(f->dx);
    free(f->logits);
    free(f->dy);
    f->xn = f->dx = f->logits = f->dy = NULL;
}

/* train.normalize's value for channel c: one value serves every channel. */
static float norm_value(const float *v, int nv, int c, float none)
{
    if (nv == 0)
        return none;
    return v[nv == 1 ? 0 : c];
}

void fgsm_normalize(const FgsmModel *f, const float *x, int64_t n, float *out)
{
    const karp_info *in = &f->info;
    if (f->nchan == 0) {
        if (out != x)
            memcpy(out, x, sizeof(float) * (size_t)(n * in->input_size));
        return;
    }
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < f->nchan; c++) {
            float mean = norm_value(in->normalize_mean, in->normalize_nmean, c, 0.0f);
            float inv = 1.0f / norm_value(in->normalize_std, in->normalize_nstd, c, 1.0f);
            int64_t at = i * in->input_size + c * f->plane;
            for (int64_t k = 0; k < f->plane; k++)
                out[at + k] = (x[at + k] - mean) * inv;
        }
}

double fgsm_ce_grad(const float *logits, const int32_t *labels, int64_t n, int64_t c, float *dy)
{
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + i * c;
        float *d = dy + i * c;
        double mx = z[0], sum = 0;
        for (int64_t j = 1; j < c; j++)
            mx = fmax(mx, z[j]);
        for (int64_t j = 0; j < c; j++)
            sum += exp(z[j] - mx);
        for (int64_t j = 0; j < c; j++) {
            double p = exp(z[j] - mx) / sum;
            d[j] = (float)((p - (j == labels[i] ? 1.0 : 0.0)) / (double)n);
        }
        total += mx + log(sum) - z[labels[i]];
    }
    return total / (double)n;
}

/* Samples whose largest logit is their label (the first maximum wins). */
static int64_t count_argmax(const float *y, const int32_t *labels, int64_t n, int64_t c)
{
    int64_t right = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0;
        for (int64_t j = 1; j < c; j++)
            if (y[i * c + j] > y[i * c + best])
                best = j;
        right += best == labels[i];
    }
    return right;
}

int fgsm_input_grad(FgsmModel *f, const float *x, const int32_t *labels, int64_t n, float *grad,
                    double *loss, int64_t *correct)
{
    const karp_info *in = &f->info;
    int rc;
    fgsm_normalize(f, x, n, f->xn);
    if ((rc = karp_forward(f->m, f->xn, n, f->logits)) != 0)
        return rc;
    double l = fgsm_ce_grad(f->logits, labels, n, in->output_size, f->dy);
    if ((rc = karp_backward(f->m, f->dy, f->dx)) != 0)
        return rc;
    if ((rc = karp_zero_gradients(f->m)) != 0)
        return rc;
    /* chain rule through normalize: d xn / d x = 1 / std of the channel */
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < (f->nchan ? f->nchan : 1); c++) {
            float inv = 1.0f / norm_value(in->normalize_std, in->normalize_nstd, c, 1.0f);
            int64_t at = i * in->input_size + c * f->plane;
            for (int64_t k = 0; k < f->plane; k++)
                grad[at + k] = f->dx[at + k] * inv;
        }
    if (loss)
        *loss = l;
    if (correct)
        *correct = count_argmax(f->logits, labels, n, in->output_size);
    return 0;
}

int fgsm_attack(FgsmModel *f, const float *x, const int32_t *labels, int64_t n, float eps,
                float *grad, float *x_adv, double *loss, int64_t *correct)
{
    int rc = fgsm_input_grad(f, x, labels, n, grad, loss, correct);
    if (rc != 0)
        return rc;
    for (int64_t i = 0; i < n * f->info.input_size; i++) {
        float step = grad[i] > 0 ? eps : grad[i] < 0 ? -eps : 0.0f;
        x_adv[i] = fminf(fmaxf(x[i] + step, 0.0f), 1.0f);
    }
    return 0;
}

int fgsm_count_correct(FgsmModel *f, const float *x, const int32_t *labels, int64_t n,
                       int64_t *correct)
{
    fgsm_normalize(f, x, n, f->xn);
    int rc = karp_infer(f->m, f->xn, n, f->logits);
    if (rc != 0)
        return rc;
    *correct = count_argmax(f->logits, labels, n, f->info.output_size);
    return 0;
}
