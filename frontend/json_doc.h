/*
 * json_doc.h — a JSON document that remembers where its values are.
 *
 * cJSON builds the tree but keeps no positions and is lenient (it accepts
 * "01", raw newlines in strings, duplicate keys, trailing garbage).  So the
 * text is first checked by a strict RFC 8259 scanner that reports the first
 * syntax error as "file:line:col: JSON syntax error: what" and records the
 * byte offset of every value in document order; cJSON then parses the text
 * and its tree, walked in the same order, is matched to those offsets.
 *
 * Ownership: the cJSON tree belongs to the document (kp_json_doc_free);
 * the position tables live in the arena given to kp_json_doc_load.
 */
#ifndef KP_JSON_DOC_H
#define KP_JSON_DOC_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "../ir/arena.h"
#include "../ir/diag.h"

typedef struct KpJsonDoc {
    const char *file;
    const char *text;
    size_t len;
    cJSON *root;            /* a JSON object */
    int nvals;
    size_t *val_off;        /* offset of value i (document order) */
    size_t *key_off;        /* offset of its key when it is a member, else val_off */
    size_t map_cap;         /* open-addressing map: cJSON node -> value index */
    const cJSON **map_node;
    int *map_idx;
    int nlines;
    size_t *line_start;     /* offsets where lines begin */
} KpJsonDoc;

/* Scan, parse and index text.  The top-level value must be an object and
 * no object may repeat a key.  Returns 0, or -1 with one diagnostic; in
 * both cases kp_json_doc_free(doc) must be called afterwards. */
int kp_json_doc_load(KpJsonDoc *doc, const char *file, const char *text, size_t len, KpArena *a,
                     KpDiag *d);
void kp_json_doc_free(KpJsonDoc *doc);

/* 1-based line of a node of doc's tree, 0 if unknown. */
int kp_json_line(const KpJsonDoc *doc, const cJSON *node);

/* The text of a node of doc's tree as written in the file, blanks
 * outside strings removed, cut to max bytes ending in "..." (max >= 8);
 * NULL if unknown. */
const char *kp_json_text(const KpJsonDoc *doc, const cJSON *node, KpArena *a, size_t max);

/* Strict syntax check (json_scan.c).  On success fills doc->nvals,
 * val_off and key_off; on failure records "file:line:col: JSON syntax
 * error: ..." and returns -1. */
int kp_json_scan(KpJsonDoc *doc, KpArena *a, KpDiag *d);

/* Line and column (1-based) of a byte offset of doc's text. */
void kp_json_linecol(const KpJsonDoc *doc, size_t off, int *line, int *col);

#endif
