#include "json_doc.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct Member {
    const char *key;
    int order;              /* position among the object's members */
    int index;              /* value index in document order */
} Member;

static int index_lines(KpJsonDoc *doc, KpArena *a)
{
    int n = 1;
    for (size_t i = 0; i < doc->len; i++)
        n += doc->text[i] == '\n';
    doc->line_start = kp_arena_alloc(a, (size_t)n * sizeof *doc->line_start);
    if (!doc->line_start)
        return -1;
    doc->nlines = 1;
    for (size_t i = 0; i < doc->len; i++)
        if (doc->text[i] == '\n')
            doc->line_start[doc->nlines++] = i + 1;
    return 0;
}

void kp_json_linecol(const KpJsonDoc *doc, size_t off, int *line, int *col)
{
    int lo = 0, hi = doc->nlines - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (doc->line_start[mid] <= off)
            lo = mid;
        else
            hi = mid - 1;
    }
    *line = lo + 1;
    *col = (int)(off - doc->line_start[lo]) + 1;
}

static size_t hash_ptr(const cJSON *p, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

static void map_put(KpJsonDoc *doc, const cJSON *node, int index)
{
    size_t h = hash_ptr(node, doc->map_cap);
    while (doc->map_node[h])
        h = (h + 1) & (doc->map_cap - 1);
    doc->map_node[h] = node;
    doc->map_idx[h] = index;
}

static int map_get(const KpJsonDoc *doc, const cJSON *node)
{
    if (!doc->map_cap || !node)
        return -1;
    size_t h = hash_ptr(node, doc->map_cap);
    while (doc->map_node[h]) {
        if (doc->map_node[h] == node)
            return doc->map_idx[h];
        h = (h + 1) & (doc->map_cap - 1);
    }
    return -1;
}

static int by_key_then_order(const void *pa, const void *pb)
{
    const Member *a = pa, *b = pb;
    int c = strcmp(a->key, b->key);
    return c ? c : a->order - b->order;
}

/* The first member (in file order) whose key an earlier member already
 * has, or NULL. */
static const Member *first_duplicate(Member *m, int n)
{
    qsort(m, (size_t)n, sizeof *m, by_key_then_order);
    const Member *dup = NULL;
    for (int k = 1; k < n; k++)
        if (strcmp(m[k].key, m[k - 1].key) == 0 && (k < 2 || strcmp(m[k].key, m[k - 2].key)))
            if (!dup || m[k].order < dup->order)
                dup = &m[k];
    return dup;
}

/* Give node and its descendants their document-order indices, from *next. */
static int walk(KpJsonDoc *doc, const cJSON *node, int *next, KpArena *a, KpDiag *d)
{
    if (*next >= doc->nvals)
        return kp_error(d, "%s: internal error: JSON tree and text disagree", doc->file);
    map_put(doc, node, (*next)++);
    int n = 0;
    for (const cJSON *c = node->child; c; c = c->next)
        n++;
    Member *m = NULL;
    if (cJSON_IsObject(node) && n > 1) {
        m = kp_arena_alloc(a, (size_t)n * sizeof *m);
        if (!m)
            return kp_error(d, "%s: out of memory", doc->file);
    }
    int k = 0;
    for (const cJSON *c = node->child; c; c = c->next, k++) {
        if (m)
            m[k] = (Member){c->string ? c->string : "", k, *next};
        if (walk(doc, c, next, a, d) < 0)
            return -1;
    }
    const Member *dup = m ? first_duplicate(m, n) : NULL;
    if (dup) {
        int line, col;
        kp_json_linecol(doc, doc->key_off[dup->index], &line, &col);
        return kp_error(d, "%s:%d:%d: duplicate key '%s'", doc->file, line, col, dup->key);
    }
    return 0;
}

static const char *kind_name(const cJSON *v)
{
    if (cJSON_IsArray(v))
        return "a list";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    return "null";
}

int kp_json_doc_load(KpJsonDoc *doc, const char *file, const char *text, size_t len, KpArena *a,
                     KpDiag *d)
{
    memset(doc, 0, sizeof *doc);
    doc->file = file;
    doc->text = text;
    doc->len = len;
    if (index_lines(doc, a) < 0)
        return kp_error(d, "%s: out of memory", file);
    if (kp_json_scan(doc, a, d) < 0)
        return -1;
    size_t bom = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    doc->root = cJSON_ParseWithLengthOpts(text + bom, len - bom, NULL, 0);
    if (!doc->root)
        return kp_error(d, "%s: cannot parse the JSON (out of memory?)", file);
    int line, col;
    kp_json_linecol(doc, doc->val_off[0], &line, &col);
    if (!cJSON_IsObject(doc->root))
        return kp_error(d, "%s:%d:%d: expected a JSON object {...} at the top level, got %s", file,
                        line, col, kind_name(doc->root));
    doc->map_cap = 16;
    while (doc->map_cap < 2 * (size_t)doc->nvals)
        doc->map_cap *= 2;
    doc->map_node = kp_arena_alloc(a, doc->map_cap * sizeof *doc->map_node);
    doc->map_idx = kp_arena_alloc(a, doc->map_cap * sizeof *doc->map_idx);
    if (!doc->map_node || !doc->map_idx)
        return kp_error(d, "%s: out of memory", file);
    int next = 0;
    return walk(doc, doc->root, &next, a, d);
}

void kp_json_doc_free(KpJsonDoc *doc)
{
    cJSON_Delete(doc->root);
    doc->root = NULL;
}

int kp_json_line(const KpJsonDoc *doc, const cJSON *node)
{
    int i = map_get(doc, node);
    if (i < 0)
        return 0;
    int line, col;
    kp_json_linecol(doc, doc->val_off[i], &line, &col);
    return line;
}

/* Append c to out[*n] while there is room for max bytes; false when full. */
static bool put(char *out, size_t *n, size_t max, char c)
{
    if (*n >= max)
        return false;
    out[(*n)++] = c;
    return true;
}

const char *kp_json_text(const KpJsonDoc *doc, const cJSON *node, KpArena *a, size_t max)
{
    int idx = map_get(doc, node);
    char *out = idx < 0 ? NULL : kp_arena_alloc(a, max + 4);
    if (!out)
        return NULL;
    size_t n = 0;
    int depth = 0;
    bool in_str = false, full = false;
    for (size_t i = doc->val_off[idx]; i < doc->len && !full; i++) {
        char c = doc->text[i];
        if (in_str) {
            full = !put(out, &n, max, c);
            if (c == '\\' && i + 1 < doc->len)
                full = full || !put(out, &n, max, doc->text[++i]);
            else if (c == '"')
                in_str = false;
            if (!in_str && depth == 0)
                break;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            if (depth == 0)
                break;
            continue;
        }
        if (depth == 0 && n > 0 && (c == ',' || c == ']' || c == '}'))
            break;
        full = !put(out, &n, max, c);
        if (c == '"')
            in_str = true;
        else if (c == '[' || c == '{')
            depth++;
        else if ((c == ']' || c == '}') && --depth == 0)
            break;
    }
    if (full) {
        n = max - 3;
        while (n > 0 && ((unsigned char)out[n] & 0xC0) == 0x80)
            n--;
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}
