/*
 * test_checkpoint_integrity.c — the integrity keys karp_save writes
 * ("karp.signature", "karp.crc32c.<tensor>") and what karp_load does with
 * them: the keys are checked here by an independent CRC-32C and FNV-1a;
 * a checkpoint of another shape, one cut short anywhere, and one with any
 * data byte flipped are refused, each with a message naming the tensor,
 * and leave the model unchanged; a file without the keys still loads.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/checkpoint.h"
#include "testutil.h"
#include "tiny_model.h"

static char tmpdir[64];
static KarpModelDesc desc;
static karp_model *model;

static void setup(void)
{
    strcpy(tmpdir, "/tmp/karp_ckpt_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    desc = tiny_desc();
    model = tiny_open(&desc);
    ck_assert_ptr_nonnull(model);
    for (int i = 0; i < 18; i++)
        model->params[i] = 0.25f * (float)(i + 1);
}

static void teardown(void)
{
    karp_close(model);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Bit by bit, from the polynomial: shares nothing with the runtime's table. */
static uint32_t ref_crc32c(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= b[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
    }
    return ~c;
}

static uint64_t ref_fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static unsigned char *read_whole(const char *path, long *size)
{
    size_t n = 0;
    unsigned char *buf = (unsigned char *)kp_test_read_file(path, &n);
    ck_assert_msg(buf != NULL, "cannot read %s", path);
    *size = (long)n;
    return buf;
}

static void write_whole(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static uint64_t header_len(const unsigned char *buf)
{
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h |= (uint64_t)buf[i] << (8 * i);
    return h;
}

static void expect_refused(const char *path, const char *msg)
{
    float before[18];
    memcpy(before, model->params, sizeof before);
    ck_assert_int_eq(karp_load(model, path), KARP_EFORMAT);
    if (msg)
        ck_assert_str_eq(karp_last_error(), msg);
    ck_assert_mem_eq(model->params, before, sizeof before);
}

START_TEST(test_crc32c_known_value)
{
    /* The check value of CRC-32C (RFC 3720). */
    ck_assert_uint_eq(kp_rt_crc32c(0, "123456789", 9), 0xe3069283u);
    ck_assert_uint_eq(ref_crc32c("123456789", 9), 0xe3069283u);
    ck_assert_uint_eq(kp_rt_crc32c(kp_rt_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
}
END_TEST

START_TEST(test_keys_written_and_verified_independently)
{
    char path[256];
    snprintf(path, sizeof path, "%s/c.safetensors", tmpdir);
    ck_assert_int_eq(karp_save(model, path), 0);
    long size;
    unsigned char *buf = read_whole(path, &size);
    uint64_t hlen = header_len(buf);
    cJSON *h = cJSON_ParseWithLength((const char *)buf + 8, hlen);
    ck_assert_ptr_nonnull(h);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
    char want[32];
    snprintf(want, sizeof want, "%016llx",
             (unsigned long long)ref_fnv1a("dense.weight:F32:[2,3]\ndense.bias:F32:[2]\n"));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, "karp.signature")->valuestring, want);
    snprintf(want, sizeof want, "%08x", ref_crc32c(buf + 8 + hlen, 24));
    ck_assert_str_eq(
        cJSON_GetObjectItemCaseSensitive(meta, "karp.crc32c.dense.weight")->valuestring, want);
    snprintf(want, sizeof want, "%08x", ref_crc32c(buf + 8 + hlen + 24, 8));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, "karp.crc32c.dense.bias")->valuestring,
                     want);
    cJSON_Delete(h);
    free(buf);

    /* Loaded, the keys are checked but not handed on, nor settable. */
    ck_assert_int_eq(karp_load(model, path), 0);
    ck_assert_ptr_null(karp_get_metadata(model, "karp.signature"));
    ck_assert_str_eq(karp_get_metadata(model, "karp_model"), "tiny");
    ck_assert_int_eq(karp_set_metadata(model, "karp.signature", "0"), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(),
                     "karp_set_metadata: key 'karp.signature' is reserved (karp_save writes it)");
}
END_TEST

START_TEST(test_other_shape_refused)
{
    char path[256], msg[512];
    snprintf(path, sizeof path, "%s/c.safetensors", tmpdir);
    ck_assert_int_eq(karp_save(model, path), 0);
    static const KarpParamDesc other[2] = {
        {"dense.weight", 2, KARP_INIT_UNIFORM_FAN_IN, {3, 2}, 0, 6, 3, 2},
        {"dense.bias", 1, KARP_INIT_UNIFORM_FAN_IN, {2}, 16, 2, 3, 2},
    };
    KarpModelDesc d2 = tiny_desc();
    d2.params = other;
    karp_model *m2 = tiny_open(&d2);
    ck_assert_ptr_nonnull(m2);
    ck_assert_int_eq(karp_load(m2, path), KARP_EFORMAT);
    snprintf(msg, sizeof msg, "%s: tensor 'dense.weight' has shape [2,3], the model expects [3,2]",
             path);
    ck_assert_str_eq(karp_last_error(), msg);
    karp_close(m2);
}
END_TEST

START_TEST(test_truncated_anywhere_refused)
{
    char path[256], cut[256], msg[512];
    snprintf(path, sizeof path, "%s/c.safetensors", tmpdir);
    snprintf(cut, sizeof cut, "%s/cut.safetensors", tmpdir);
    ck_assert_int_eq(karp_save(model, path), 0);
    long size;
    unsigned char *buf = read_whole(path, &size);
    uint64_t hlen = header_len(buf);
    for (long n = 0; n < size; n++) {
        write_whole(cut, buf, (size_t)n);
        expect_refused(cut, NULL);
    }
    /* Inside the bias, the last tensor: named. */
    write_whole(cut, buf, (size_t)size - 3);
    snprintf(msg, sizeof msg,
             "%s: truncated: tensor 'dense.bias' ends at byte %llu, file has %ld bytes", cut, (unsigned long long)(8 + hlen + 32), size - 3);
    expect_refused(cut, msg);
    /* Inside the weight: the first tensor cut is named. */
    write_whole(cut, buf, (size_t)(8 + hlen + 10));
    snprintf(msg, sizeof msg,
             "%s: truncated: tensor 'dense.weight' ends at byte %llu, file has %llu bytes", cut,
             (unsigned long long)(8 + hlen + 24), (unsigned long long)(8 + hlen + 10));
    expect_refused(cut, msg);
    free(buf);
}
END_TEST

START_TEST(test_corrupted_byte_refused)
{
    char path[256], bad[256], msg[512];
    snprintf(path, sizeof path, "%s/c.safetensors", tmpdir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", tmpdir);
    ck_assert_int_eq(karp_save(model, path), 0);
    long size;
    unsigned char *buf = read_whole(path, &size);
    uint64_t hlen = header_len(buf);
    /* Every data byte, every bit position in turn. */
    for (long i = (long)(8 + hlen); i < size; i++) {
        buf[i] ^= (unsigned char)(1u << (i % 8));
        write_whole(bad, buf, (size_t)size);
        const char *name = i < (long)(8 + hlen + 24) ? "dense.weight" : "dense.bias";
        long b = i < (long)(8 + hlen + 24) ? (long)(8 + hlen) : (long)(8 + hlen + 24);
        long n = i < (long)(8 + hlen + 24) ? 24 : 8;
        uint32_t got = ref_crc32c(buf + b, (size_t)n);
        buf[i] ^= (unsigned char)(1u << (i % 8));
        uint32_t want = ref_crc32c(buf + b, (size_t)n);
        snprintf(msg, sizeof msg,
                 "%s: tensor '%s' is corrupted: its data have CRC-32C %08x, the file says %08x",
                 bad, name, got, want);
        expect_refused(bad, msg);
    }
    free(buf);
}
END_TEST

/* Replace the first occurrence of from by to (same length) in buf. */
static void patch(unsigned char *buf, long size, const char *from, const char *to)
{
    size_t n = strlen(from);
    ck_assert_uint_eq(strlen(to), n);
    for (long i = 0; i + (long)n <= size; i++)
        if (memcmp(buf + i, from, n) == 0) {
            memcpy(buf + i, to, n);
            return;
        }
    ck_abort_msg("'%s' not found", from);
}

START_TEST(test_header_tampering_refused)
{
    char path[256], bad[256], msg[512];
    snprintf(path, sizeof path, "%s/c.safetensors", tmpdir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", tmpdir);
    ck_assert_int_eq(karp_save(model, path), 0);
    long size;
    unsigned char *buf = read_whole(path, &size);
    char sig[32];
    snprintf(sig, sizeof sig, "%016llx",
             (unsigned long long)ref_fnv1a("dense.weight:F32:[2,3]\ndense.bias:F32:[2]\n"));

    /* A signature that is not the model's. */
    unsigned char *copy = malloc((size_t)size);
    memcpy(copy, buf, (size_t)size);
    patch(copy, size, sig, "0123456789abcdef");
    write_whole(bad, copy, (size_t)size);
    snprintf(msg, sizeof msg,
             "%s: signature 0123456789abcdef (model 'tiny') does not match model 'tiny' "
             "(signature %s)",
             bad, sig);
    expect_refused(bad, msg);

    /* A signature without a checksum for some tensor. */
    memcpy(copy, buf, (size_t)size);
    patch(copy, size, "karp.crc32c.dense.bias", "karp.crc32c.dense.XXXX");
    write_whole(bad, copy, (size_t)size);
    snprintf(msg, sizeof msg,
             "%s: tensor 'dense.bias' has no checksum (metadata 'karp.crc32c.dense.bias')", bad);
    expect_refused(bad, msg);

    /* Without any karp.* key (as PyTorch writes it), it loads. */
    memcpy(copy, buf, (size_t)size);
    patch(copy, size, "karp.signature", "xarp.signature");
    patch(copy, size, "karp.crc32c.dense.bias", "xarp.crc32c.dense.bias");
    patch(copy, size, "karp.crc32c.dense.weight", "xarp.crc32c.dense.weight");
    write_whole(bad, copy, (size_t)size);
    float saved[18];
    memcpy(saved, model->params, sizeof saved);
    karp_init_params(model, 7);
    ck_assert_int_eq(karp_load(model, bad), 0);
    ck_assert_mem_eq(model->params, saved, 6 * 4);
    ck_assert_mem_eq(model->params + 16, saved + 16, 2 * 4);
    free(copy);
    free(buf);
}
END_TEST

/* A trainable model: the optimizer state and step are checksummed too. */
START_TEST(test_optimizer_state_checksummed)
{
    char path[256];
    snprintf(path, sizeof path, "%s/adam.safetensors", tmpdir);
    KarpModelDesc d = tiny_train_desc(2);
    karp_model *m = tiny_open(&d);
    ck_assert_ptr_nonnull(m);
    for (int i = 0; i < 2 * (int)d.param_floats; i++)
        m->opt[i] = (float)i;
    m->step = 3;
    ck_assert_int_eq(karp_save(m, path), 0);
    ck_assert_int_eq(karp_load(m, path), 0);
    long size;
    unsigned char *buf = read_whole(path, &size);
    buf[size - 1] ^= 0x40; /* the step's last byte */
    write_whole(path, buf, (size_t)size);
    ck_assert_int_eq(karp_load(m, path), KARP_EFORMAT);
    ck_assert_ptr_nonnull(strstr(karp_last_error(), "tensor 'optimizer.step' is corrupted"));
    ck_assert_int_eq(m->step, 3);
    free(buf);
    karp_close(m);
}
END_TEST

static Suite *integrity_suite(void)
{
    Suite *s = suite_create("checkpoint_integrity");
    TCase *tc = tcase_create("integrity");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_crc32c_known_value);
    tcase_add_test(tc, test_keys_written_and_verified_independently);
    tcase_add_test(tc, test_other_shape_refused);
    tcase_add_test(tc, test_truncated_anywhere_refused);
    tcase_add_test(tc, test_corrupted_byte_refused);
    tcase_add_test(tc, test_header_tampering_refused);
    tcase_add_test(tc, test_optimizer_state_checksummed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(integrity_suite(), CK_FORK_GETENV);
}
