/*
 * parse_util.h — shared by the frontend's parsing files (not public).
 *
 * Every message goes through kp_fe_fail and reads
 *     "<file>: <path>: '<key>' <what>, got <value>"
 * where <path> is a JSON path ("batch", "optimizer", "train.augment[1]")
 * or a layer ("layers[3] (conv2d)"), and the key part is left out when the
 * path already names the value.
 */
#ifndef KP_PARSE_UTIL_H
#define KP_PARSE_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "json_doc.h"
#include "spec.h"

enum {
    KP_FE_MAX_DIM = 1 << 24,        /* any dimension, units, filters, kernel size */
    KP_FE_MAX_NAME = 64             /* characters of a model or layer name */
};
#define KP_FE_MAX_SAMPLE ((int64_t)1 << 31)     /* elements of one sample */

typedef struct KpFe {
    const char *file;
    KpArena *a;
    KpDiag *d;
    const KpJsonDoc *doc;
    KpModelSpec *s;
} KpFe;

/* Record "<file>: <path>: '<key>' <fmt...>"; path "" and key NULL are left
 * out.  Returns -1. */
int kp_fe_fail(KpFe *p, const char *path, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* v as compact JSON, cut to about 40 characters ("[1,2,3,..."). */
const char *kp_fe_show(KpFe *p, const cJSON *v);

/* s cut to about 40 characters, control characters replaced by '?': a
 * user's string made safe for a one-line message. */
const char *kp_fe_clip(KpFe *p, const char *s);

/* The candidate closest to word by edit distance when it is close enough
 * to be a likely typo, else NULL. */
const char *kp_fe_suggest(const char *word, const char *const *cands, int n);

/* Every key of obj must be one of keys[0..n-1]: "unknown key 'unit', did
 * you mean 'units'?" otherwise. */
int kp_fe_check_keys(KpFe *p, const char *path, const cJSON *obj, const char *const *keys, int n);

/* "a, b, c" in the arena. */
const char *kp_fe_join(KpFe *p, const char *const *names, int n);

/* v is a finite number with an integral value in [lo, hi]. */
bool kp_fe_int_in(const cJSON *v, int64_t lo, int64_t hi, int64_t *out);
/* v is a finite number. */
bool kp_fe_number(const cJSON *v, double *out);

/* A positive integer up to max: "must be a positive integer, got X" or
 * "must be at most <max>, got X". */
int kp_fe_pos_int(KpFe *p, const char *path, const char *key, const cJSON *v, int64_t max,
                  int64_t *out);

/* A string naming one of names[0..n-1]; its index in *out.  noun names
 * the thing in "unknown <noun> 'x', expected one of a, b, c". */
int kp_fe_enum(KpFe *p, const char *path, const char *key, const char *noun, const cJSON *v,
               const char *const *names, int n, int *out);

/* [A-Za-z_][A-Za-z0-9_]*, at most KP_FE_MAX_NAME characters. */
bool kp_fe_is_ident(const char *s);

/* a*b, saturated at INT64_MAX (both non-negative). */
int64_t kp_fe_mul_sat(int64_t a, int64_t b);

/* Layers (layers.c): parse one layer object into l (zeroed by the
 * caller).  graph_form allows "input"/"inputs", "add" and "concat".  where
 * is "layers[3]".  l->name stays NULL when the layer has no "name". */
int kp_fe_parse_layer(KpFe *p, const cJSON *obj, const char *where, bool graph_form,
                      KpLayerSpec *l);

/* Layer names (graph.c): unique across s->layers; named[i] says whether
 * layer i chose its name (else it is "<type><index>"). */
int kp_fe_check_names(KpFe *p, const bool *named);
/* The graph form (graph.c): every input names a node or "input", the
 * inputs form no cycle, output (the JSON value) names a node; sets
 * s->output. */
int kp_fe_check_graph(KpFe *p, const cJSON *output);

/* Training parts (training.c). */
int kp_fe_parse_loss(KpFe *p, const cJSON *v);
int kp_fe_parse_optimizer(KpFe *p, const cJSON *v);
int kp_fe_parse_train(KpFe *p, const cJSON *v);

#endif
