#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct KpArenaBlock {
    KpArenaBlock *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

enum { BLOCK_SIZE = 64 * 1024 };

void kp_arena_init(KpArena *a)
{
    a->head = NULL;
    a->failed = 0;
}

void *kp_arena_alloc(KpArena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size == 0)
        size = 16;
    KpArenaBlock *b = a->head;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > BLOCK_SIZE ? size : BLOCK_SIZE;
        b = malloc(sizeof *b + cap);
        if (!b) {
            a->failed = 1;
            return NULL;
        }
        b->used = 0;
        b->cap = cap;
        /* A big one-off block goes behind the head so the head's free room
         * keeps serving small requests. */
        if (a->head && cap > BLOCK_SIZE) {
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    void *p = b->data + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

char *kp_arena_strndup(KpArena *a, const char *s, size_t n)
{
    char *p = kp_arena_alloc(a, n + 1);
    if (p)
        memcpy(p, s, n);
    return p;
}

char *kp_arena_strdup(KpArena *a, const char *s)
{
    return s ? kp_arena_strndup(a, s, strlen(s)) : NULL;
}

char *kp_arena_printf(KpArena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = kp_arena_alloc(a, (size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void *kp_arena_grow(KpArena *a, void *old, size_t n, size_t cap, size_t elem)
{
    void *p = kp_arena_alloc(a, cap * elem);
    if (p && old && n)
        memcpy(p, old, n * elem);
    return p;
}

void kp_arena_free(KpArena *a)
{
    KpArenaBlock *b = a->head;
    while (b) {
        KpArenaBlock *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}
