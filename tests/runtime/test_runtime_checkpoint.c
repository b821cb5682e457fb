/*
 * test_runtime_checkpoint.c — checkpoints of trainable models: optimizer
 * state and step (written, read back by an independent reader here, loaded
 * all-or-nothing), metadata, and a resumed run that continues exactly.
 * Damaged files are made by editing the header of a saved one.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiny_model.h"
#include "testutil.h"

static char tmpdir[64];
static KarpModelDesc descs[3];
static KarpModelDesc infer_only;

static void setup(void)
{
    strcpy(tmpdir, "/tmp/karp_rt_ckpt_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    for (int s = 0; s < 3; s++)
        descs[s] = tiny_train_desc(s);
    infer_only = tiny_desc();
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static void in_tmp(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static const float X[12] = {1, 0, 0, 1, 1, 1, 0.5f, -1, 2, 3, 0, -2};
static const float T[8] = {1, 2, 3, 4, -1, 0.5f, 2, 2};

/* k train steps over a fixed cycle of batches, starting at batch `from`. */
static void train(karp_model *m, int from, int k)
{
    for (int i = from; i < from + k; i++) {
        int64_t n = 1 + i % 4;
        ck_assert_int_eq(karp_train_step(m, X, T, n, NULL), 0);
    }
}

/* ---- an independent reader ---- */

typedef struct File {
    unsigned char *bytes;
    long size;
    uint64_t hlen;
    cJSON *header;
} File;

static File read_st(const char *path)
{
    File f = {0};
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    fseek(fp, 0, SEEK_END);
    f.size = ftell(fp);
    rewind(fp);
    f.bytes = malloc((size_t)f.size);
    ck_assert_uint_eq(fread(f.bytes, 1, (size_t)f.size, fp), (size_t)f.size);
    fclose(fp);
    for (int i = 0; i < 8; i++)
        f.hlen |= (uint64_t)f.bytes[i] << (8 * i);
    f.header = cJSON_ParseWithLength((const char *)f.bytes + 8, f.hlen);
    ck_assert_ptr_nonnull(f.header);
    return f;
}

static void free_st(File *f)
{
    cJSON_Delete(f->header);
    free(f->bytes);
}

/* The data of tensor name, checking its dtype and shape. */
static const void *tensor(const File *f, const char *name, const char *dtype, int rank,
                          const int *shape)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(f->header, name);
    ck_assert_msg(cJSON_IsObject(t), "no tensor %s", name);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(t, "dtype")->valuestring, dtype);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(t, "shape");
    ck_assert_int_eq(cJSON_GetArraySize(s), rank);
    long numel = 1;
    for (int i = 0; i < rank; i++) {
        ck_assert_int_eq(cJSON_GetArrayItem(s, i)->valueint, shape[i]);
        numel *= shape[i];
    }
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    long b = (long)cJSON_GetArrayItem(o, 0)->valuedouble, e = (long)cJSON_GetArrayItem(o, 1)->valuedouble;
    ck_assert_int_eq(e - b, numel * (strcmp(dtype, "I64") == 0 ? 8 : 4));
    ck_assert_int_le((long)(8 + f->hlen) + e, f->size);
    return f->bytes + 8 + f->hlen + b;
}

/* Write f back with its (edited) header and the same data area. */
static void write_back(const File *f, const char *path)
{
    char *text = cJSON_PrintUnformatted(f->header);
    size_t n = strlen(text), padded = (n + 7) & ~(size_t)7;
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    for (int i = 0; i < 8; i++)
        fputc((int)((padded >> (8 * i)) & 0xff), fp);
    fputs(text, fp);
    for (size_t i = n; i < padded; i++)
        fputc(' ', fp);
    fwrite(f->bytes + 8 + f->hlen, 1, (size_t)f->size - 8 - f->hlen, fp);
    ck_assert_int_eq(fclose(fp), 0);
    free(text);
}

static int64_t step_of(const karp_model *m)
{
    karp_info info;
    ck_assert_int_eq(karp_model_info(m, &info), 0);
    return info.step;
}

START_TEST(test_adam_round_trip)
{
    char path[256];
    in_tmp(path, sizeof path, "adam.safetensors");
    karp_model *m = tiny_open(&descs[2]);
    train(m, 0, 3);
    ck_assert_int_eq(karp_set_metadata(m, "epoch", "7"), 0);
    ck_assert_int_eq(karp_set_metadata(m, "note", "first"), 0);
    ck_assert_int_eq(karp_set_metadata(m, "note", "second"), 0);
    ck_assert_int_eq(karp_set_metadata(m, "gone", "x"), 0);
    ck_assert_int_eq(karp_set_metadata(m, "gone", NULL), 0);
    ck_assert_str_eq(karp_get_metadata(m, "note"), "second");
    ck_assert_ptr_null(karp_get_metadata(m, "gone"));
    ck_assert_int_eq(karp_save(m, path), 0);

    File f = read_st(path);
    /* 3 params, 2 slots x 2 trainable params, the step, the metadata. */
    ck_assert_int_eq(cJSON_GetArraySize(f.header), 3 + 4 + 1 + 1);
    const int w[2] = {2, 3}, b[1] = {2};
    ck_assert_mem_eq(tensor(&f, "dense.weight", "F32", 2, w), m->params, 24);
    ck_assert_mem_eq(tensor(&f, "dense.bias", "F32", 1, b), m->params + 16, 8);
    ck_assert_mem_eq(tensor(&f, "stat.running_mean", "F32", 1, b), m->params + 32, 8);
    ck_assert_mem_eq(tensor(&f, "optimizer.dense.weight.exp_avg", "F32", 2, w), m->opt, 24);
    ck_assert_mem_eq(tensor(&f, "optimizer.dense.bias.exp_avg", "F32", 1, b), m->opt + 16, 8);
    ck_assert_mem_eq(tensor(&f, "optimizer.dense.weight.exp_avg_sq", "F32", 2, w),
                     m->opt + TINY_TRAIN_FLOATS, 24);
    ck_assert_mem_eq(tensor(&f, "optimizer.dense.bias.exp_avg_sq", "F32", 1, b),
                     m->opt + TINY_TRAIN_FLOATS + 16, 8);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(f.header,
                                                        "optimizer.stat.running_mean.exp_avg"));
    int64_t step;
    memcpy(&step, tensor(&f, "optimizer.step", "I64", 0, NULL), 8);
    ck_assert_int_eq(step, 3);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(f.header, "__metadata__");
    /* 4 pairs, then the signature and one CRC-32C per tensor (3 params,
     * 2 x 2 adam slots, the step): test_checkpoint_integrity checks them. */
    ck_assert_int_eq(cJSON_GetArraySize(meta), 4 + 1 + 8);
    ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(meta, "karp.signature"));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, "format")->valuestring, "pt");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, "karp_model")->valuestring, "trainee");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, "epoch")->valuestring, "7");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, "note")->valuestring, "second");
    free_st(&f);

    karp_model *r = tiny_open(&descs[2]);
    ck_assert_int_eq(karp_set_metadata(r, "stale", "1"), 0);
    ck_assert_int_eq(karp_load(r, path), 0);
    ck_assert_mem_eq(r->params, m->params, TINY_TRAIN_FLOATS * 4);
    ck_assert_mem_eq(r->opt, m->opt, 2 * TINY_TRAIN_FLOATS * 4);
    ck_assert_int_eq(step_of(r), 3);
    ck_assert_str_eq(karp_get_metadata(r, "format"), "pt");
    ck_assert_str_eq(karp_get_metadata(r, "karp_model"), "trainee");
    ck_assert_str_eq(karp_get_metadata(r, "epoch"), "7");
    ck_assert_ptr_null(karp_get_metadata(r, "stale"));
    /* Saving what was loaded keeps the caller's pairs, not two "format"s. */
    ck_assert_int_eq(karp_save(r, path), 0);
    f = read_st(path);
    meta = cJSON_GetObjectItemCaseSensitive(f.header, "__metadata__");
    /* 4 pairs, then the signature and one CRC-32C per tensor (3 params,
     * 2 x 2 adam slots, the step): test_checkpoint_integrity checks them. */
    ck_assert_int_eq(cJSON_GetArraySize(meta), 4 + 1 + 8);
    ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(meta, "karp.signature"));
    free_st(&f);

    ck_assert_int_eq(karp_set_metadata(m, "format", "x"), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_set_metadata: key 'format' is reserved (karp_save "
                                        "writes it)");
    ck_assert_int_eq(karp_set_metadata(m, "karp_model", "x"), KARP_EINVAL);
    ck_assert_int_eq(karp_set_metadata(NULL, "a", "b"), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_set_metadata: model is NULL");
    ck_assert_int_eq(karp_set_metadata(m, NULL, "b"), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_set_metadata: key is NULL");
    ck_assert_ptr_null(karp_get_metadata(NULL, "a"));
    ck_assert_ptr_null(karp_get_metadata(m, NULL));
    karp_close(m);
    karp_close(r);
}
END_TEST

START_TEST(test_sgd_momentum_and_inference_files)
{
    char path[256];
    in_tmp(path, sizeof path, "m.safetensors");
    karp_model *m = tiny_open(&descs[0]);
    train(m, 0, 2);
    ck_assert_int_eq(karp_save(m, path), 0);
    File f = read_st(path);
    ck_assert_int_eq(cJSON_GetArraySize(f.header), 3 + 1 + 1); /* sgd: only the step */
    int64_t step;
    memcpy(&step, tensor(&f, "optimizer.step", "I64", 0, NULL), 8);
    ck_assert_int_eq(step, 2);
    /* The step alone, or nothing, is a whole sgd state. */
    karp_model *r = tiny_open(&descs[0]);
    ck_assert_int_eq(karp_load(r, path), 0);
    ck_assert_int_eq(step_of(r), 2);
    cJSON_DeleteItemFromObjectCaseSensitive(f.header, "optimizer.step");
    write_back(&f, path);
    ck_assert_int_eq(karp_load(r, path), 0);
    ck_assert_int_eq(step_of(r), 0);
    free_st(&f);
    karp_close(m);
    karp_close(r);

    m = tiny_open(&descs[1]);
    train(m, 0, 2);
    ck_assert_int_eq(karp_save(m, path), 0);
    f = read_st(path);
    ck_assert_int_eq(cJSON_GetArraySize(f.header), 3 + 2 + 1 + 1);
    const int w[2] = {2, 3};
    ck_assert_mem_eq(tensor(&f, "optimizer.dense.weight.momentum_buffer", "F32", 2, w), m->opt, 24);
    free_st(&f);
    karp_close(m);

    m = tiny_open(&infer_only);
    ck_assert_int_eq(karp_save(m, path), 0);
    f = read_st(path);
    ck_assert_int_eq(cJSON_GetArraySize(f.header), 2 + 1);
    free_st(&f);
    karp_close(m);
}
END_TEST

static void drop_slots(cJSON *h);

START_TEST(test_params_only_resets_optimizer)
{
    char path[256];
    in_tmp(path, sizeof path, "p.safetensors");
    karp_model *m = tiny_open(&descs[2]);
    train(m, 0, 2);
    ck_assert_int_eq(karp_save(m, path), 0);
    File f = read_st(path);
    drop_slots(f.header);
    cJSON_DeleteItemFromObject(f.header, "optimizer.step");
    write_back(&f, path);
    free_st(&f);
    float params[TINY_TRAIN_FLOATS];
    memcpy(params, m->params, sizeof params);
    train(m, 2, 3);
    ck_assert_int_eq(karp_forward(m, X, 1, NULL), 0);
    const float dy[2] = {1, 1};
    ck_assert_int_eq(karp_backward(m, dy, NULL), 0);
    ck_assert_int_eq(karp_load(m, path), 0);
    ck_assert_mem_eq(m->params, params, sizeof params);
    ck_assert_int_eq(step_of(m), 0);
    for (int i = 0; i < TINY_TRAIN_FLOATS; i++) {
        ck_assert_float_eq(m->opt[i], 0);
        ck_assert_float_eq(m->opt[TINY_TRAIN_FLOATS + i], 0);
        ck_assert_float_eq(m->grads[i], 0);
    }
    ck_assert_int_eq(karp_backward(m, dy, NULL), KARP_EINVAL);
    karp_close(m);
}
END_TEST

/* Save a trained adam model, edit the file, and expect load to refuse it
 * with msg (after the path) and to change nothing. */
typedef void (*Edit)(cJSON *header);

static void expect_refused(int slots, Edit edit, const char *msg)
{
    char path[256], full[1024];
    in_tmp(path, sizeof path, "edit.safetensors");
    karp_model *src = tiny_open(&descs[2]);
    train(src, 0, 2);
    ck_assert_int_eq(karp_save(src, path), 0);
    karp_close(src);
    File f = read_st(path);
    edit(f.header);
    write_back(&f, path);
    free_st(&f);

    karp_model *m = slots < 0 ? tiny_open(&infer_only) : tiny_open(&descs[slots]);
    if (slots >= 0)
        train(m, 1, 3);
    ck_assert_int_eq(karp_set_metadata(m, "keep", "me"), 0);
    float params[TINY_TRAIN_FLOATS], opt[2 * TINY_TRAIN_FLOATS];
    int64_t nf = m->desc->param_floats;
    memcpy(params, m->params, (size_t)nf * 4);
    memcpy(opt, m->opt, (size_t)(m->desc->opt_slots * nf) * 4);
    int64_t step = step_of(m);
    ck_assert_int_eq(karp_load(m, path), KARP_EFORMAT);
    snprintf(full, sizeof full, "%s: %s", path, msg);
    ck_assert_str_eq(karp_last_error(), full);
    ck_assert_mem_eq(m->params, params, (size_t)nf * 4);
    ck_assert_mem_eq(m->opt, opt, (size_t)(m->desc->opt_slots * nf) * 4);
    ck_assert_int_eq(step_of(m), step);
    ck_assert_str_eq(karp_get_metadata(m, "keep"), "me");
    karp_close(m);
}

static void drop_bias_sq(cJSON *h) { cJSON_DeleteItemFromObject(h, "optimizer.dense.bias.exp_avg_sq"); }
static void drop_step(cJSON *h) { cJSON_DeleteItemFromObject(h, "optimizer.step"); }
static void drop_running_and_step(cJSON *h)
{
    cJSON_DeleteItemFromObject(h, "stat.running_mean");
    cJSON_DeleteItemFromObject(h, "optimizer.step");
}
static void drop_slots(cJSON *h)
{
    cJSON_DeleteItemFromObject(h, "optimizer.dense.weight.exp_avg");
    cJSON_DeleteItemFromObject(h, "optimizer.dense.bias.exp_avg");
    cJSON_DeleteItemFromObject(h, "optimizer.dense.weight.exp_avg_sq");
    cJSON_DeleteItemFromObject(h, "optimizer.dense.bias.exp_avg_sq");
}
static void step_f32(cJSON *h)
{
    cJSON *t = cJSON_GetObjectItem(h, "optimizer.step");
    cJSON_ReplaceItemInObject(t, "dtype", cJSON_CreateString("F32"));
}
static void step_rank1(cJSON *h)
{
    cJSON *t = cJSON_GetObjectItem(h, "optimizer.step");
    cJSON_ReplaceItemInObject(t, "shape", cJSON_CreateIntArray((const int[]){1}, 1));
}
static void meta_number(cJSON *h)
{
    cJSON_AddNumberToObject(cJSON_GetObjectItem(h, "__metadata__"), "epoch", 3);
}
static void meta_array(cJSON *h)
{
    cJSON_ReplaceItemInObject(h, "__metadata__", cJSON_CreateArray());
}

START_TEST(test_partial_and_bad_optimizer_state)
{
    expect_refused(2, drop_bias_sq,
                   "partial optimizer state: missing tensor 'optimizer.dense.bias.exp_avg_sq'");
    expect_refused(2, drop_step, "partial optimizer state: missing tensor 'optimizer.step'");
    expect_refused(2, drop_slots,
                   "partial optimizer state: missing tensor 'optimizer.dense.weight.exp_avg'");
    expect_refused(2, step_f32, "tensor 'optimizer.step' has dtype F32, expected I64");
    expect_refused(2, step_rank1, "tensor 'optimizer.step' has shape [1], the model expects []");
    expect_refused(1, drop_step,
                   "unexpected tensor 'optimizer.dense.weight.exp_avg' (model 'trainee' has "
                   "another optimizer)");
    expect_refused(-1, drop_running_and_step,
                   "unexpected tensor 'optimizer.dense.weight.exp_avg' (model 'tiny' has no "
                   "optimizer)");
    expect_refused(2, meta_number, "metadata 'epoch' is not a string");
    expect_refused(2, meta_array, "__metadata__ is not a JSON object");

    char path[256], msg[512];
    in_tmp(path, sizeof path, "negative.safetensors");
    karp_model *m = tiny_open(&descs[2]);
    train(m, 0, 2);
    ck_assert_int_eq(karp_save(m, path), 0);
    File f = read_st(path);
    const int64_t minus3 = -3;
    memcpy((void *)tensor(&f, "optimizer.step", "I64", 0, NULL), &minus3, 8);
    /* As another writer would store it: without karpc's checksums. */
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(f.header, "__metadata__");
    for (cJSON *v = meta->child, *next; v; v = next) {
        next = v->next;
        if (strncmp(v->string, "karp.", 5) == 0)
            cJSON_Delete(cJSON_DetachItemViaPointer(meta, v));
    }
    write_back(&f, path);
    free_st(&f);
    ck_assert_int_eq(karp_load(m, path), KARP_EFORMAT);
    snprintf(msg, sizeof msg, "%s: optimizer.step is -3, not a count of steps", path);
    ck_assert_str_eq(karp_last_error(), msg);
    ck_assert_int_eq(step_of(m), 2);
    karp_close(m);
}
END_TEST

START_TEST(test_resume_continues_exactly)
{
    for (int slots = 0; slots < 3; slots++) {
        char path[256];
        in_tmp(path, sizeof path, "resume.safetensors");
        karp_model *whole = tiny_open(&descs[slots]), *first = tiny_open(&descs[slots]);
        train(whole, 0, 10);
        train(first, 0, 4);
        ck_assert_int_eq(karp_save(first, path), 0);
        karp_close(first);
        karp_model *resumed = tiny_open(&descs[slots]);
        ck_assert_int_eq(karp_init_params(resumed, 12345), 0);
        ck_assert_int_eq(karp_load(resumed, path), 0);
        ck_assert_int_eq(step_of(resumed), 4);
        train(resumed, 4, 6);
        ck_assert_mem_eq(resumed->params, whole->params, TINY_TRAIN_FLOATS * 4);
        ck_assert_mem_eq(resumed->opt, whole->opt, (size_t)(slots * TINY_TRAIN_FLOATS) * 4);
        ck_assert_int_eq(step_of(resumed), 10);
        karp_close(whole);
        karp_close(resumed);
    }
}
END_TEST

static Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("runtime_checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_adam_round_trip);
    tcase_add_test(tc, test_sgd_momentum_and_inference_files);
    tcase_add_test(tc, test_params_only_resets_optimizer);
    tcase_add_test(tc, test_partial_and_bad_optimizer_state);
    tcase_add_test(tc, test_resume_continues_exactly);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(checkpoint_suite(), CK_FORK_GETENV);
}
