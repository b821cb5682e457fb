/*
 * conv_dnnl.c — oneDNN's convolution as conv_bench's peer, found with
 * dlopen when the bench runs (the build never needs oneDNN: without its
 * header the peer is compiled out, without the library it is "missing").
 *
 * Two set-ups per direction:
 *   plain    NCHW data and OIHW weights, as karpc and PyTorch hold them:
 *            what oneDNN does with the same contract;
 *   blocked  every layout "any": oneDNN's own choice (channel-blocked
 *            nChw16c and blocked weights on AVX-512), the reorders into
 *            and out of it not timed — its best case, the ceiling a
 *            channel-blocked karpc would aim at.
 * Written against the oneDNN 2.x C API (Debian's libdnnl 2.6); a 3.x
 * header compiles the peer out.
 */
#include "conv_dnnl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<oneapi/dnnl/dnnl.h>)
#include <oneapi/dnnl/dnnl.h>
#if DNNL_VERSION_MAJOR == 2
#define HAVE_DNNL 1
#endif
#endif
#endif

#ifdef HAVE_DNNL

/* The functions used, looked up once. */
#define FUNCS(X)                                                                                   \
    X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_memory_desc_init_by_tag)                    \
    X(dnnl_dilated_convolution_forward_desc_init)                                                  \
    X(dnnl_dilated_convolution_backward_data_desc_init)                                            \
    X(dnnl_dilated_convolution_backward_weights_desc_init) X(dnnl_primitive_desc_create)           \
    X(dnnl_primitive_desc_query_md) X(dnnl_primitive_desc_query) X(dnnl_primitive_create)          \
    X(dnnl_memory_create) X(dnnl_primitive_execute) X(dnnl_stream_wait)                            \
    X(dnnl_primitive_destroy) X(dnnl_primitive_desc_destroy) X(dnnl_memory_destroy)                \
    X(dnnl_memory_get_data_handle) X(dnnl_memory_desc_get_size)

#define DECL(f) static __typeof__(f) *p_##f;
FUNCS(DECL)
#undef DECL

static dnnl_engine_t engine;
static dnnl_stream_t stream;

int peer_dnnl_compiled(void)
{
    return 1;
}

int peer_dnnl_load(void)
{
    static int state;           /* 0 not tried, 1 loaded, -1 missing */
    if (state)
        return state > 0;
    state = -1;
    const char *names[] = {"libdnnl.so.2", "libdnnl.so"};
    void *h = NULL;
    for (int i = 0; i < 2 && !h; i++)
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return 0;
#define LOOK(f)                                                                                    \
    if (!(p_##f = (__typeof__(f) *)dlsym(h, #f)))                                                  \
        return 0;
    FUNCS(LOOK)
#undef LOOK
    if (p_dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success ||
        p_dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success)
        return 0;
    state = 1;
    return 1;
}

struct PeerConv {
    dnnl_primitive_t prim;
    dnnl_primitive_desc_t pd;
    dnnl_memory_t mem[3];
    dnnl_exec_arg_t args[3];
};

static void md4(dnnl_memory_desc_t *md, int64_t a, int64_t b, int64_t c, int64_t d,
                dnnl_format_tag_t tag)
{
    dnnl_dims_t dims = {a, b, c, d};
    p_dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag);
}

PeerConv *peer_conv_new(const PeerGeom *g, PeerDir dir, int blocked, float *x, float *w, float *y,
                        char *impl, size_t cap)
{
    if (!peer_dnnl_load())
        return NULL;
    dnnl_memory_desc_t xm, wm, ym;
    md4(&xm, g->n, g->c, g->h, g->w, blocked ? dnnl_format_tag_any : dnnl_nchw);
    md4(&wm, g->f, g->c, g->kh, g->kw, blocked ? dnnl_format_tag_any : dnnl_oihw);
    md4(&ym, g->n, g->f, g->oh, g->ow, blocked ? dnnl_format_tag_any : dnnl_nchw);
    dnnl_dims_t st = {g->sh, g->sw}, dil = {g->dh - 1, g->dw - 1}, pl = {g->pt, g->pl};
    dnnl_dims_t pr = {(g->oh - 1) * g->sh + (g->kh - 1) * g->dh + 1 - g->h - g->pt,
                      (g->ow - 1) * g->sw + (g->kw - 1) * g->dw + 1 - g->w - g->pl};
    dnnl_convolution_desc_t fwd, cd;
    if (p_dnnl_dilated_convolution_forward_desc_init(&fwd, dnnl_forward_training, dnnl_convolution_direct,
                                                     &xm, &wm, NULL, &ym, st, dil, pl, pr) != dnnl_success)
        return NULL;
    dnnl_primitive_desc_t hint = NULL;
    if (p_dnnl_primitive_desc_create(&hint, &fwd, NULL, engine, NULL) != dnnl_success)
        return NULL;
    dnnl_status_t s = dnnl_success;
    if (dir == PEER_GRAD_X)
        s = p_dnnl_dilated_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &xm, &wm,
                                                               &ym, st, dil, pl, pr);
    else if (dir == PEER_GRAD_W)
        s = p_dnnl_dilated_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &xm,
                                                                  &wm, NULL, &ym, st, dil, pl, pr);
    PeerConv *c = calloc(1, sizeof *c);
    if (!c || s != dnnl_success ||
        (dir == PEER_FORWARD ? (c->pd = hint, hint = NULL, 0)
                             : p_dnnl_primitive_desc_create(&c->pd, &cd, NULL, engine, hint)) != dnnl_success ||
        p_dnnl_primitive_create(&c->prim, c->pd) != dnnl_success) {
        if (hint)
            p_dnnl_primitive_desc_destroy(hint);
        free(c);
        return NULL;
    }
    if (hint)
        p_dnnl_primitive_desc_destroy(hint);
    /* the three operands in the primitive's layouts: x, w, y */
    dnnl_query_t q[3][3] = {
        {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md},
        {dnnl_query_diff_src_md, dnnl_query_weights_md, dnnl_query_diff_dst_md},
        {dnnl_query_src_md, dnnl_query_diff_weights_md, dnnl_query_diff_dst_md},
    };
    int arg[3][3] = {
        {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
        {DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST},
        {DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_DST},
    };
    float *user[3] = {x, w, y};
    for (int i = 0; i < 3; i++) {
        const dnnl_memory_desc_t *md = p_dnnl_primitive_desc_query_md(c->pd, q[dir][i], 0);
        p_dnnl_memory_create(&c->mem[i], md, engine, blocked ? DNNL_MEMORY_ALLOCATE : user[i]);
        if (blocked) {      /* zeros: timing only, and no denormals */
            void *h = NULL;
            p_dnnl_memory_get_data_handle(c->mem[i], &h);
            memset(h, 0, p_dnnl_memory_desc_get_size(md));
        }
        c->args[i] = (dnnl_exec_arg_t){arg[dir][i], c->mem[i]};
    }
    const char *name = NULL;
    p_dnnl_primitive_desc_query(c->pd, dnnl_query_impl_info_str, 0, &name);
    snprintf(impl, cap, "%s", name ? name : "?");
    return c;
}

void peer_conv_run(PeerConv *c)
{
    p_dnnl_primitive_execute(c->prim, stream, 3, c->args);
    p_dnnl_stream_wait(stream);
}

void peer_conv_free(PeerConv *c)
{
    if (!c)
        return;
    for (int i = 0; i < 3; i++)
        p_dnnl_memory_destroy(c->mem[i]);
    p_dnnl_primitive_destroy(c->prim);
    p_dnnl_primitive_desc_destroy(c->pd);
    free(c);
}

#else

int peer_dnnl_compiled(void)
{
    return 0;
}

int peer_dnnl_load(void)
{
    return 0;
}

PeerConv *peer_conv_new(const PeerGeom *g, PeerDir dir, int blocked, float *x, float *w, float *y,
                        char *impl, size_t cap)
{
    (void)g, (void)dir, (void)blocked, (void)x, (void)w, (void)y, (void)impl, (void)cap;
    return NULL;
}

void peer_conv_run(PeerConv *c)
{
    (void)c;
}

void peer_conv_free(PeerConv *c)
{
    (void)c;
}

#endif
