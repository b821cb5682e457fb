/*
 * conv_dnnl.h — oneDNN's convolution as a peer of conv_bench (conv_dnnl.c),
 * loaded with dlopen at run time.
 */
#ifndef CONV_DNNL_H
#define CONV_DNNL_H

#include <stddef.h>
#include <stdint.h>

/* NCHW x [n,c,h,w], OIHW w [f,c,kh,kw], y [n,f,oh,ow]; dilation 1 = none. */
typedef struct PeerGeom {
    int64_t n, c, h, w, f, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw;
} PeerGeom;

typedef enum { PEER_FORWARD, PEER_GRAD_X, PEER_GRAD_W } PeerDir;

typedef struct PeerConv PeerConv;

/* 1 if oneDNN's library was found and works. */
int peer_dnnl_load(void);
/* 1 if the peer was compiled in (oneDNN 2.x's header was found). */
int peer_dnnl_compiled(void);
/* One direction of the convolution g (forward: y from x, w; grad_x: x
 * from y, w; grad_w: w from x, y), on the caller's buffers (blocked 0)
 * or on buffers in oneDNN's chosen layouts (blocked 1).  impl gets
 * oneDNN's implementation name.  NULL if oneDNN is missing or refuses. */
PeerConv *peer_conv_new(const PeerGeom *g, PeerDir dir, int blocked, float *x, float *w, float *y,
                        char *impl, size_t cap);
void peer_conv_run(PeerConv *c);
void peer_conv_free(PeerConv *c);

#endif
