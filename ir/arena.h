/*
 * arena.h — bump allocation for everything one compilation owns.
 *
 * A KpArena hands out zeroed, 16-byte aligned memory from large blocks and
 * frees it all at once in kp_arena_free().  The graph, its nodes, values and
 * strings, and the frontend's model spec all live in one arena; nothing in
 * them is freed on its own.
 */
#ifndef KP_ARENA_H
#define KP_ARENA_H

#include <stddef.h>

typedef struct KpArenaBlock KpArenaBlock;

typedef struct KpArena {
    KpArenaBlock *head;
    int failed;             /* set once an allocation failed */
} KpArena;

void kp_arena_init(KpArena *a);
/* Zeroed memory, or NULL when out of memory (a->failed is then set). */
void *kp_arena_alloc(KpArena *a, size_t size);
char *kp_arena_strdup(KpArena *a, const char *s);
char *kp_arena_strndup(KpArena *a, const char *s, size_t n);
/* printf into arena memory. */
char *kp_arena_printf(KpArena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Grow an array kept in the arena: returns a copy of old (n elems) with room
 * for cap elems; old is simply abandoned. */
void *kp_arena_grow(KpArena *a, void *old, size_t n, size_t cap, size_t elem);
void kp_arena_free(KpArena *a);

#endif
