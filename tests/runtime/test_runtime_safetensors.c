/*
 * test_runtime_safetensors.c — karp_save / karp_load.  Saved files are read
 * back by an independent reader written here (length, cJSON header, raw
 * bytes); damaged and mismatched files, written by hand, must each be
 * refused with the exact message and leave the parameters unchanged.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tiny_model.h"
#include "testutil.h"

static char tmpdir[64];
static KarpModelDesc desc;
static karp_model *model;

static void setup(void)
{
    strcpy(tmpdir, "/tmp/karp_rt_st_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    desc = tiny_desc();
    model = tiny_open(&desc);
    ck_assert_ptr_nonnull(model);
    /* Values whose bits a careless round trip would change. */
    const uint32_t bits[8] = {0x80000000u /* -0 */, 0x7fc12345u /* NaN, payload */,
                              0x00000001u /* denormal */, 0x3f800000u, 0xc2c80000u,
                              0x7f7fffffu, 0x3f000000u, 0xbf800000u};
    memcpy(model->params, bits, 6 * 4);
    memcpy(model->params + 16, bits + 6, 2 * 4);
}

static void teardown(void)
{
    karp_close(model);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static void in_tmp(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static unsigned char *read_whole(const char *path, long *size)
{
    size_t n = 0;
    unsigned char *buf = (unsigned char *)kp_test_read_file(path, &n);
    ck_assert_msg(buf != NULL, "cannot read %s", path);
    *size = (long)n;
    return buf;
}

static int tmp_files_left(void)
{
    int n = 0;
    DIR *d = opendir(tmpdir);
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static void check_tensor(const cJSON *h, const char *name, int rank, const int *shape, int b, int e)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(h, name);
    ck_assert_msg(cJSON_IsObject(t), "no tensor %s", name);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(t, "dtype")->valuestring, "F32");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(t, "shape");
    ck_assert_int_eq(cJSON_GetArraySize(s), rank);
    for (int i = 0; i < rank; i++)
        ck_assert_int_eq(cJSON_GetArrayItem(s, i)->valueint, shape[i]);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    ck_assert_int_eq(cJSON_GetArraySize(o), 2);
    ck_assert_int_eq(cJSON_GetArrayItem(o, 0)->valueint, b);
    ck_assert_int_eq(cJSON_GetArrayItem(o, 1)->valueint, e);
}

START_TEST(test_save_format_and_round_trip)
{
    char path[256];
    in_tmp(path, sizeof path, "tiny.safetensors");
    ck_assert_int_eq(karp_save(model, path), 0);
    ck_assert_int_eq(tmp_files_left(), 0);

    long size;
    unsigned char *buf = read_whole(path, &size);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)buf[i] << (8 * i);
    ck_assert_uint_eq(hlen % 8, 0);
    ck_assert_int_eq(size, (long)(8 + hlen + 32));
    cJSON *h = cJSON_ParseWithLength((const char *)buf + 8, hlen);
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(cJSON_GetArraySize(h), 3);
    check_tensor(h, "dense.weight", 2, (const int[]){2, 3}, 0, 24);
    check_tensor(h, "dense.bias", 1, (const int[]){2}, 24, 32);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, "format")->valuestring, "pt");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, "karp_model")->valuestring, "tiny");
    cJSON_Delete(h);
    ck_assert_mem_eq(buf + 8 + hlen, model->params, 24);
    ck_assert_mem_eq(buf + 8 + hlen + 24, model->params + 16, 8);

    float before[18];
    memcpy(before, model->params, sizeof before);
    karp_init_params(model, 99);
    ck_assert_int_eq(karp_load(model, path), 0);
    ck_assert_mem_eq(model->params, before, 6 * 4);
    ck_assert_mem_eq(model->params + 16, before + 16, 2 * 4);

    /* Saving again replaces the file. */
    model->params[0] = 5.0f;
    ck_assert_int_eq(karp_save(model, path), 0);
    karp_init_params(model, 99);
    ck_assert_int_eq(karp_load(model, path), 0);
    ck_assert_float_eq(model->params[0], 5.0f);
    ck_assert_int_eq(tmp_files_left(), 0);
    free(buf);
}
END_TEST

/* Write a safetensors file from header text (padded here) and data. */
static void write_st(const char *path, const char *header, const void *data, size_t n)
{
    size_t len = strlen(header), padded = (len + 7) & ~(size_t)7;
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 8; i++)
        fputc((int)((padded >> (8 * i)) & 0xff), f);
    fputs(header, f);
    for (size_t i = len; i < padded; i++)
        fputc(' ', f);
    if (n)
        fwrite(data, 1, n, f);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_raw(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(bytes, 1, n, f);
    ck_assert_int_eq(fclose(f), 0);
}

static void expect_load_refused(const char *path, int code, const char *msg)
{
    float before[18];
    memcpy(before, model->params, sizeof before);
    ck_assert_int_eq(karp_load(model, path), code);
    ck_assert_str_eq(karp_last_error(), msg);
    ck_assert_mem_eq(model->params, before, sizeof before);
}

#define W(offs) "\"dense.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":" offs "}"
#define B(offs) "\"dense.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" offs "}"

START_TEST(test_load_accepts_any_order)
{
    char path[256];
    in_tmp(path, sizeof path, "swapped.safetensors");
    float data[8] = {7, 8, 1, 2, 3, 4, 5, 6}; /* bias first */
    write_st(path, "{" B("[0,8]") "," W("[8,32]") ",\"__metadata__\":{\"format\":\"pt\"}}", data,
             sizeof data);
    ck_assert_int_eq(karp_load(model, path), 0);
    ck_assert_float_eq(model->params[0], 1);
    ck_assert_float_eq(model->params[5], 6);
    ck_assert_float_eq(model->params[16], 7);
    ck_assert_float_eq(model->params[17], 8);
}
END_TEST

START_TEST(test_load_refusals)
{
    char path[256], msg[1024];
    float data[16] = {0};
    in_tmp(path, sizeof path, "bad.safetensors");

    write_st(path, "{" W("[0,24]") "," B("[24,32]") "}", data, 20);
    snprintf(msg, sizeof msg, "%s: truncated: tensor 'dense.weight' ends at byte 168, file has 164 bytes", path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    const unsigned char huge[12] = {0x00, 0xc2, 0xeb, 0x0b, 0, 0, 0, 0, '{', '}', ' ', ' '};
    write_raw(path, huge, sizeof huge); /* 200 000 000 */
    snprintf(msg, sizeof msg,
             "%s: header length 200000000 is too large (at most 100000000 bytes)", path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    const unsigned char past_end[12] = {0xe8, 0x03, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    write_raw(path, past_end, sizeof past_end);
    snprintf(msg, sizeof msg, "%s: truncated: header ends at byte 1008, file has 12 bytes", path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    write_raw(path, "abc", 3);
    snprintf(msg, sizeof msg, "%s: truncated: file has 3 bytes, the header length alone takes 8",
             path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    write_st(path,
             "{\"dense.weight\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]}," B(
                 "[12,20]") "}",
             data, 20);
    snprintf(msg, sizeof msg, "%s: tensor 'dense.weight' has dtype F16, expected F32", path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    write_st(path,
             "{\"dense.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]}," B(
                 "[24,32]") "}",
             data, 32);
    snprintf(msg, sizeof msg, "%s: tensor 'dense.weight' has shape [3,2], the model expects [2,3]",
             path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    write_st(path, "{" W("[0,24]") "}", data, 24);
    snprintf(msg, sizeof msg, "%s: missing tensor 'dense.bias'", path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    write_st(path,
             "{" W("[0,24]") "," B("[24,32]") ",\"foo\":{\"dtype\":\"F32\",\"shape\":[],"
                                              "\"data_offsets\":[32,36]}}",
             data, 36);
    snprintf(msg, sizeof msg, "%s: unexpected tensor 'foo'", path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    write_st(path, "{" W("[0,20]") "," B("[24,32]") "}", data, 32);
    snprintf(msg, sizeof msg, "%s: tensor 'dense.weight' has 20 bytes of data, its shape [2,3] needs 24",
             path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    write_st(path, "{" W("[0,24]") "," B("[16,24]") "}", data, 32);
    snprintf(msg, sizeof msg, "%s: tensors 'dense.weight' and 'dense.bias' overlap", path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    write_st(path, "{" W("[0,24]") "," W("[0,24]") "," B("[24,32]") "}", data, 32);
    snprintf(msg, sizeof msg, "%s: tensor 'dense.weight' appears twice", path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    write_st(path, "{" W("[0,24]") "," B("[24,-8]") "}", data, 32);
    snprintf(msg, sizeof msg, "%s: tensor 'dense.bias' has invalid data_offsets", path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    write_st(path, "{" W("[0,24]") ",\"dense.bias\":{\"dtype\":\"F32\",\"shape\":[2.5]}}", data, 32);
    snprintf(msg, sizeof msg, "%s: tensor 'dense.bias' has an invalid shape", path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    write_st(path, "{not json at all", data, 32);
    snprintf(msg, sizeof msg, "%s: header is not valid JSON (near byte 10)", path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    write_st(path, "[1, 2]", data, 32);
    snprintf(msg, sizeof msg, "%s: header is not a JSON object", path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    write_st(path, "{} trailing", data, 32);
    snprintf(msg, sizeof msg, "%s: header has bytes after the JSON object (at byte 11)", path);
    expect_load_refused(path, KARP_EFORMAT, msg);

    in_tmp(path, sizeof path, "nowhere.safetensors");
    snprintf(msg, sizeof msg, "%s: cannot open: No such file or directory", path);
    expect_load_refused(path, KARP_EIO, msg);

    expect_load_refused(tmpdir, KARP_EIO, (snprintf(msg, sizeof msg, "%s: not a regular file",
                                                    tmpdir), msg));
    ck_assert_int_eq(karp_load(NULL, path), KARP_EINVAL);
    ck_assert_int_eq(karp_load(model, NULL), KARP_EINVAL);
    ck_assert_str_eq(karp_last_error(), "karp_load: path is NULL");
}
END_TEST

START_TEST(test_save_failures_are_clean)
{
    char path[256], msg[1024];
    in_tmp(path, sizeof path, "no/such/dir/x.safetensors");
    ck_assert_int_eq(karp_save(model, path), KARP_EIO);
    snprintf(msg, sizeof msg,
             "%s: cannot create temporary file '%s.tmp.%ld': No such file or directory", path, path,
             (long)getpid());
    ck_assert_str_eq(karp_last_error(), msg);

    /* The rename fails (a directory is in the way): the temp file goes. */
    in_tmp(path, sizeof path, "isdir");
    ck_assert_int_eq(mkdir(path, 0755), 0);
    ck_assert_int_eq(karp_save(model, path), KARP_EIO);
    snprintf(msg, sizeof msg, "%s: rename failed: Is a directory (the old file, if any, is unchanged)",
             path);
    ck_assert_str_eq(karp_last_error(), msg);
    ck_assert_int_eq(tmp_files_left(), 0);

    /* A write fails (file size limit; root is bound by it too): the old
     * file is untouched and no temp file remains. */
    in_tmp(path, sizeof path, "keep.safetensors");
    ck_assert_int_eq(karp_save(model, path), 0);
    long old_size;
    unsigned char *old = read_whole(path, &old_size);
    model->params[0] = 42.0f;
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {.rlim_cur = 16, .rlim_max = RLIM_INFINITY};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    ck_assert_int_eq(karp_save(model, path), KARP_EIO);
    rl.rlim_cur = RLIM_INFINITY;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    snprintf(msg, sizeof msg, "%s: write failed: File too large (the old file, if any, is unchanged)",
             path);
    ck_assert_str_eq(karp_last_error(), msg);
    ck_assert_int_eq(tmp_files_left(), 0);
    long new_size;
    unsigned char *now = read_whole(path, &new_size);
    ck_assert_int_eq(new_size, old_size);
    ck_assert_mem_eq(now, old, (size_t)old_size);
    free(old);
    free(now);

    ck_assert_int_eq(karp_save(NULL, path), KARP_EINVAL);
    ck_assert_int_eq(karp_save(model, NULL), KARP_EINVAL);
}
END_TEST

static Suite *safetensors_suite(void)
{
    Suite *s = suite_create("runtime_safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_save_format_and_round_trip);
    tcase_add_test(tc, test_load_accepts_any_order);
    tcase_add_test(tc, test_load_refusals);
    tcase_add_test(tc, test_save_failures_are_clean);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return kp_test_main(safetensors_suite(), CK_FORK_GETENV);
}
