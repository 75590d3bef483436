/* arena.c - the per-step bump allocator behind every activation and node. */
#include "vt_autograd.h"

#include <string.h>

struct vt_arena_chunk {
    vt_arena_chunk *next;
    size_t size, used;
    unsigned char *mem; /* 64-byte aligned */
};

static vt_arena_chunk *chunk_new(size_t size)
{
    vt_arena_chunk *ch = malloc(sizeof *ch);
    VT_ASSERT(ch, "out of memory");
    ch->mem = aligned_alloc(64, (size + 63) & ~(size_t)63);
    VT_ASSERT(ch->mem, "out of memory allocating a %zu-byte arena chunk", size);
    ch->size = size;
    ch->used = 0;
    ch->next = NULL;
    return ch;
}

void vt_arena_init(vt_arena *a, size_t chunk_size)
{
    memset(a, 0, sizeof *a);
    /* Small first chunk: tests and tools make many tiny contexts; a training
     * loop grows it once, then vt_arena_reset keeps one chunk of a step's
     * size. */
    a->chunk_size = chunk_size ? chunk_size : ((size_t)4 << 20);
}

void *vt_arena_alloc(vt_arena *a, size_t bytes)
{
    size_t need = (bytes + 63) & ~(size_t)63;
    if (need == 0)
        need = 64;
    if (!a->head || a->head->used + need > a->head->size) {
        if (a->head) {
            a->head->next = a->full;
            a->full = a->head;
        }
        a->head = chunk_new(need > a->chunk_size ? need : a->chunk_size);
    }
    void *p = a->head->mem + a->head->used;
    a->head->used += need;
    a->used += need;
    if (a->used > a->peak)
        a->peak = a->used;
    return p;
}

void *vt_arena_calloc(vt_arena *a, size_t bytes)
{
    void *p = vt_arena_alloc(a, bytes);
    memset(p, 0, bytes);
    return p;
}

/* Keep a single chunk as large as the whole last step, so the next step
 * (same shapes) is served without malloc and without fragmentation. */
void vt_arena_reset(vt_arena *a)
{
    size_t total = 0;
    for (vt_arena_chunk *ch = a->full; ch; ch = ch->next)
        total += ch->size;
    if (a->full) {
        total += a->head->size;
        vt_arena_chunk *ch = a->full;
        while (ch) {
            vt_arena_chunk *nx = ch->next;
            free(ch->mem);
            free(ch);
            ch = nx;
        }
        a->full = NULL;
        free(a->head->mem);
        free(a->head);
        a->head = chunk_new(total);
    }
    if (a->head)
        a->head->used = 0;
    a->used = 0;
}

void vt_arena_free(vt_arena *a)
{
    vt_arena_chunk *lists[2] = {a->head, a->full};
    for (int i = 0; i < 2; i++) {
        vt_arena_chunk *ch = lists[i];
        while (ch) {
            vt_arena_chunk *nx = ch->next;
            free(ch->mem);
            free(ch);
            ch = nx;
        }
    }
    memset(a, 0, sizeof *a);
}
