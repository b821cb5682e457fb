/*
 * examples/gan and examples/dcgan, short runs on a small generated IDX
 * dataset (mnist:DIR; 28x28 bright rectangles of random size and place on
 * a dark background, with noise): the losses printed are finite, the
 * discriminator's loss moves away from its first step's, the generator's
 * samples change from epoch to epoch, and each epoch's grid is a valid PNG
 * (signature, IHDR of 8x8 tiles, CRCs, IDAT inflating to the rows, IEND).
 * Bad options are one line on stderr and exit status 1.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "testutil.h"

#define SAMPLES 256
#define SIDE 28
#define GRID_SIDE (8 * (SIDE + 2) + 2) /* 8 tiles, 2-pixel borders */

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static void put_be32(FILE *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    ck_assert_int_eq(fwrite(b, 1, 4, f), 4);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* dir/train-images-idx3-ubyte and dir/train-labels-idx1-ubyte, raw. */
static void write_dataset(const char *dir)
{
    char *images = kp_test_path(dir, "train-images-idx3-ubyte");
    char *labels = kp_test_path(dir, "train-labels-idx1-ubyte");
    FILE *fi = fopen(images, "wb"), *fl = fopen(labels, "wb");
    ck_assert(fi && fl);
    put_be32(fi, 0x803);
    put_be32(fi, SAMPLES);
    put_be32(fi, SIDE);
    put_be32(fi, SIDE);
    put_be32(fl, 0x801);
    put_be32(fl, SAMPLES);
    for (int i = 0; i < SAMPLES; i++) {
        uint8_t img[SIDE * SIDE];
        int h = 8 + (int)(rnd() % 14), w = 6 + (int)(rnd() % 12);
        int top = (int)(rnd() % (uint32_t)(SIDE - h)), left = (int)(rnd() % (uint32_t)(SIDE - w));
        for (int r = 0; r < SIDE; r++)
            for (int c = 0; c < SIDE; c++) {
                int in = r >= top && r < top + h && c >= left && c < left + w;
                img[r * SIDE + c] = (uint8_t)((in ? 180 : 10) + rnd() % 40);
            }
        ck_assert_int_eq(fwrite(img, 1, sizeof img, fi), sizeof img);
        uint8_t label = (uint8_t)(rnd() % 10);
        ck_assert_int_eq(fwrite(&label, 1, 1, fl), 1);
    }
    ck_assert_int_eq(fclose(fi), 0);
    ck_assert_int_eq(fclose(fl), 0);
    free(images);
    free(labels);
}

/* A valid 8-bit gray PNG of GRID_SIDE x GRID_SIDE; its pixels, malloc'd. */
static uint8_t *read_png(const char *path)
{
    size_t len;
    uint8_t *f = (uint8_t *)kp_test_read_file(path, &len);
    ck_assert_msg(f != NULL, "%s is missing", path);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    ck_assert_msg(len > 8 + 25 + 12 && memcmp(f, sig, 8) == 0, "%s: no PNG signature", path);
    ck_assert_int_eq(be32(f + 8), 13);
    ck_assert(memcmp(f + 12, "IHDR", 4) == 0);
    ck_assert_int_eq(be32(f + 16), GRID_SIDE);
    ck_assert_int_eq(be32(f + 20), GRID_SIDE);
    ck_assert_int_eq(f[24], 8); /* bit depth */
    ck_assert_int_eq(f[25], 0); /* gray */

    size_t raw_len = (size_t)GRID_SIDE * (GRID_SIDE + 1);
    uint8_t *raw = malloc(raw_len);
    int saw_idat = 0, saw_iend = 0;
    for (size_t at = 8; at + 12 <= len && !saw_iend;) {
        uint32_t n = be32(f + at);
        ck_assert_msg(at + 12 + n <= len, "%s: chunk past the end", path);
        uLong crc = crc32(crc32(0L, Z_NULL, 0), f + at + 4, 4 + n);
        ck_assert_msg(crc == be32(f + at + 8 + n), "%s: bad CRC", path);
        if (memcmp(f + at + 4, "IDAT", 4) == 0) {
            uLongf out = (uLongf)raw_len;
            ck_assert_int_eq(uncompress(raw, &out, f + at + 8, n), Z_OK);
            ck_assert_int_eq(out, raw_len);
            saw_idat = 1;
        }
        saw_iend = memcmp(f + at + 4, "IEND", 4) == 0;
        at += 12 + n;
    }
    ck_assert_msg(saw_idat && saw_iend, "%s: IDAT or IEND missing", path);
    uint8_t *px = malloc((size_t)GRID_SIDE * GRID_SIDE);
    for (int r = 0; r < GRID_SIDE; r++) {
        ck_assert_int_eq(raw[(size_t)r * (GRID_SIDE + 1)], 0); /* filter: none */
        memcpy(px + (size_t)r * GRID_SIDE, raw + (size_t)r * (GRID_SIDE + 1) + 1, GRID_SIDE);
    }
    free(raw);
    free(f);
    return px;
}

/* Run one example; check its log and its two epochs' images. */
static void check_gan(const char *name, const char *args, double min_move)
{
    char *dir = kp_test_tmpdir();
    write_dataset(dir);
    char *out = kp_test_path(dir, "out");
    KpRun r = kp_test_run("%s/examples/%s/%s --data mnist:%s --epochs 2 --out %s --log-every 1 "
                          "--threads 2 %s",
                          KARP_BINARY_DIR, name, name, dir, out, args);
    printf("%s", r.out);
    ck_assert_msg(r.status == 0, "%s exited with %d: %s", name, r.status, r.err);

    /* every logged loss finite; D's first step against the rest */
    double first_d = NAN, max_move = 0;
    int lines = 0, epochs = 0;
    for (const char *p = r.out; (p = strstr(p, "D loss ")) != NULL; p++) {
        double d, g;
        ck_assert_int_eq(sscanf(p, "D loss %lf G loss %lf", &d, &g), 2);
        ck_assert_msg(isfinite(d) && isfinite(g), "%s: non-finite loss (D %g, G %g)", name, d, g);
        if (lines++ == 0)
            first_d = d;
        else if (fabs(d - first_d) > max_move)
            max_move = fabs(d - first_d);
    }
    for (const char *line = r.out; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char c = 0;
        if (sscanf(line, "epoch %*d/%*d%c", &c) == 1 && c == ':') /* not "epoch E/N step" */
            epochs++;
        line += n + (end != NULL);
    }
    ck_assert_msg(lines > 4 && epochs == 2, "%s: %d loss lines, %d epoch lines", name, lines, epochs);
    ck_assert_msg(max_move > min_move, "%s: D loss stays at %.4f (moves at most %.4f)", name,
                  first_d, max_move);

    char *png1 = kp_test_path(out, "epoch_001.png"), *png2 = kp_test_path(out, "epoch_002.png");
    uint8_t *a = read_png(png1), *b = read_png(png2);
    long changed = 0;
    for (int i = 0; i < GRID_SIDE * GRID_SIDE; i++)
        changed += a[i] != b[i];
    ck_assert_msg(changed > GRID_SIDE * GRID_SIDE / 20, "%s: only %ld pixels change from epoch 1 to 2",
                  name, changed);
    /* the tiles are not all one value */
    int lo = 255, hi = 0;
    for (int i = 0; i < GRID_SIDE * GRID_SIDE; i++)
        lo = a[i] < lo ? a[i] : lo, hi = a[i] > hi ? a[i] : hi;
    ck_assert_int_gt(hi - lo, 32);

    free(a), free(b), free(png1), free(png2), free(out);
    kp_test_run_free(&r);
    kp_test_rmdir(dir);
    free(dir);
}

START_TEST(gan_trains_on_a_small_dataset)
{
    check_gan("gan", "--limit 256 --batch 32", 0.1);
}
END_TEST

START_TEST(dcgan_trains_on_a_small_dataset)
{
    check_gan("dcgan", "--limit 48 --batch 16", 0.02);
}
END_TEST

START_TEST(bad_options_are_one_line)
{
    const char *bad[] = {"--epochs 0", "--batch x", "--frobnicate 1", "--data nowhere:/x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        KpRun r = kp_test_run("%s/examples/gan/gan %s", KARP_BINARY_DIR, bad[i]);
        ck_assert_msg(r.status == 1, "'%s': status %d", bad[i], r.status);
        ck_assert_msg(strlen(r.err) > 0 && strchr(r.err, '\n') == r.err + strlen(r.err) - 1,
                      "'%s': stderr is not one line: %s", bad[i], r.err);
        kp_test_run_free(&r);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gan");
    TCase *tc = tcase_create("gan");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, gan_trains_on_a_small_dataset);
    tcase_add_test(tc, dcgan_trains_on_a_small_dataset);
    tcase_add_test(tc, bad_options_are_one_line);
    suite_add_tcase(s, tc);
    return kp_test_main(s, CK_FORK_GETENV);
}
