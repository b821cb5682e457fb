/*
 * image.c — a PNG file is the 8-byte signature and three chunks:
 *
 *   IHDR  width, height, bit depth 8, colour type 0 (gray), no interlace
 *   IDAT  the zlib stream of the rows, each row prefixed by filter byte 0
 *   IEND  empty
 *
 * each chunk being length (4 bytes, big endian), type, data, and the CRC-32
 * of type and data.
 */
#include "image.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define GRID_PAD 2

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int write_chunk(FILE *f, const char *type, const uint8_t *data, uint32_t len)
{
    uint8_t head[8];
    put_be32(head, len);
    memcpy(head + 4, type, 4);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, head + 4, 4);
    if (len)
        crc = crc32(crc, data, len);
    uint8_t tail[4];
    put_be32(tail, (uint32_t)crc);
    if (fwrite(head, 1, 8, f) != 8)
        return -1;
    if (len && fwrite(data, 1, len, f) != len)
        return -1;
    return fwrite(tail, 1, 4, f) == 4 ? 0 : -1;
}

int image_write_png(const char *path, const uint8_t *pixels, int w, int h, char *msg, int cap)
{
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t raw_len = (size_t)h * ((size_t)w + 1);
    uLongf z_len = compressBound((uLong)raw_len);
    uint8_t *raw = malloc(raw_len);
    uint8_t *z = malloc(z_len);
    if (!raw || !z) {
        free(raw);
        free(z);
        snprintf(msg, (size_t)cap, "%s: out of memory", path);
        return -1;
    }
    for (int r = 0; r < h; r++) {
        raw[(size_t)r * ((size_t)w + 1)] = 0;
        memcpy(raw + (size_t)r * ((size_t)w + 1) + 1, pixels + (size_t)r * (size_t)w, (size_t)w);
    }
    int zrc = compress2(z, &z_len, raw, (uLong)raw_len, Z_BEST_COMPRESSION);
    free(raw);
    if (zrc != Z_OK) {
        free(z);
        snprintf(msg, (size_t)cap, "%s: zlib compress2 failed (%d)", path, zrc);
        return -1;
    }

    uint8_t ihdr[13];
    put_be32(ihdr, (uint32_t)w);
    put_be32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 0;  /* gray */
    ihdr[10] = 0; /* deflate */
    ihdr[11] = 0; /* adaptive filtering, filter type per row */
    ihdr[12] = 0; /* no interlace */

    FILE *f = fopen(path, "wb");
    if (!f) {
        free(z);
        snprintf(msg, (size_t)cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    int bad = fwrite(signature, 1, 8, f) != 8;
    bad = bad || write_chunk(f, "IHDR", ihdr, 13) != 0;
    bad = bad || write_chunk(f, "IDAT", z, (uint32_t)z_len) != 0;
    bad = bad || write_chunk(f, "IEND", NULL, 0) != 0;
    bad = fclose(f) != 0 || bad;
    free(z);
    if (bad) {
        snprintf(msg, (size_t)cap, "%s: write failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int image_write_grid(const char *path, const float *x, int count, int h, int w, int cols, float lo,
                     float hi, char *msg, int cap)
{
    int rows = (count + cols - 1) / cols;
    int gw = cols * (w + GRID_PAD) + GRID_PAD;
    int gh = rows * (h + GRID_PAD) + GRID_PAD;
    uint8_t *g = calloc((size_t)gw * (size_t)gh, 1);
    if (!g) {
        snprintf(msg, (size_t)cap, "%s: out of memory", path);
        return -1;
    }
    for (int i = 0; i < count; i++) {
        int top = GRID_PAD + (i / cols) * (h + GRID_PAD);
        int left = GRID_PAD + (i % cols) * (w + GRID_PAD);
        const float *img = x + (size_t)i * (size_t)h * (size_t)w;
        for (int r = 0; r < h; r++)
            for (int c = 0; c < w; c++) {
                float v = (img[r * w + c] - lo) / (hi - lo);
                v = isnan(v) ? 0.0f : fminf(fmaxf(v, 0.0f), 1.0f);
                g[(size_t)(top + r) * (size_t)gw + (size_t)(left + c)] = (uint8_t)lrintf(v * 255.0f);
            }
    }
    int rc = image_write_png(path, g, gw, gh, msg, cap);
    free(g);
    return rc;
}
