/*
 * image.h — grayscale images out of the example programs: a minimal PNG
 * writer (zlib for the compression and the CRCs) and a grid of samples.
 */
#ifndef KARP_EXAMPLE_IMAGE_H
#define KARP_EXAMPLE_IMAGE_H

#include <stdint.h>

/* Write pixels (h rows of w bytes, 8-bit gray) to path as a PNG file.
 * 0, or -1 with a one-line reason in msg[cap]. */
int image_write_png(const char *path, const uint8_t *pixels, int w, int h, char *msg, int cap);

/* Tile count images of h x w floats, values in [lo, hi] (clamped), into a
 * grid of cols columns with a 2-pixel black border, and write it as a PNG.
 * 0, or -1 with the reason in msg[cap]. */
int image_write_grid(const char *path, const float *x, int count, int h, int w, int cols, float lo,
                     float hi, char *msg, int cap);

#endif
