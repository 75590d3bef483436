/* arena.c - the per-step bump allocator behind every activation and node,
 * and the pool of large blocks that activations and their gradients come
 * from, which can be given back before the step ends. */
#include "vt_autograd.h"

#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#ifdef __linux__
#include <sys/mman.h>
#endif

/* Buffers of 4 MB and more (the pool's activations and gradients, the
 * arena's chunks, the conv kernels' scratch) on 2 MB pages where the
 * kernel allows it (transparent huge pages in "madvise" mode, Debian's
 * default): a conv's output tile writes 6 channels' rows a whole feature
 * map apart, a different 4 KB page each, and on a virtual machine every
 * TLB miss walks two page tables. C3D's training step: 7.13 -> 6.83 s
 * (docs/performance.md, round 6). Parameters stay on small pages: no
 * faster there, and calloc keeps an evaluation's unused gradients off
 * the resident set. */
void *vt_alloc_big(size_t bytes)
{
    enum { HUGE = 2 << 20 };
    if (bytes < 2 * (size_t)HUGE)
        return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    const size_t size = (bytes + HUGE - 1) & ~(size_t)(HUGE - 1);
    void *p = aligned_alloc(HUGE, size);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (p)
        madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
}

struct vt_arena_chunk {
    vt_arena_chunk *next;
    size_t size, used;
    unsigned char *mem; /* 64-byte aligned */
};

static vt_arena_chunk *chunk_new(size_t size)
{
    vt_arena_chunk *ch = malloc(sizeof *ch);
    VT_ASSERT(ch, "out of memory");
    ch->mem = vt_alloc_big(size);
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
    /* Below this, a buffer is not worth a block of its own: the bump arena
     * keeps small tensors and headers at no per-buffer cost. */
    a->pool_min = (size_t)64 << 10;
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
static void pool_reset(vt_arena *a);

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
    pool_reset(a);
}

static void pool_free(struct vt_pool *pl);

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
    pool_free(a->pool);
    memset(a, 0, sizeof *a);
}

/* ==== Pool of large buffers =========================================== */

/* A training or evaluation step asks for the same buffers in the same
 * order with the same lifetimes every time. So the pool records the step's
 * requests (size, when taken, when given back), and at reset lays them out
 * in one region: each buffer gets an offset no buffer alive at the same
 * time overlaps (each at the lowest free offset, in the better of two
 * placing orders, as static memory planners do). The next step then takes every buffer from the
 * region: no malloc, and the region is about as large as the most bytes
 * alive at once. A request that does not match the plan (the first step,
 * a new shape) gets its own malloc, freed when it goes back; the next
 * reset plans again. Every decision depends only on the request sequence,
 * so runs are reproducible. */
typedef struct {
    unsigned char *mem;
    size_t size;
    int owned;   /* the taker has not dropped it */
    int pins;
    int own_mem; /* malloc'd, not in the region */
    int idx;     /* request number in this step */
} pool_buf;

typedef struct {
    size_t size, off;
    long t0, t1; /* taken, given back (event clock) */
} pool_req;

struct vt_pool {
    pool_buf *live; /* taken buffers, sorted by address */
    int n_live, cap_live;
    pool_req *rec;  /* this step's requests */
    int n_rec, cap_rec;
    long clock;
    pool_req *plan; /* the region's layout */
    int n_plan;
    unsigned char *region;
    size_t region_size;
    size_t own_bytes; /* malloc'd by this step */
};

static void pool_free(struct vt_pool *pl)
{
    if (!pl)
        return;
    for (int i = 0; i < pl->n_live; i++)
        if (pl->live[i].own_mem)
            free(pl->live[i].mem);
    free(pl->live);
    free(pl->rec);
    free(pl->plan);
    free(pl->region);
    free(pl);
}

/* Index of the first live buffer whose end lies above q. */
static int live_search(const struct vt_pool *pl, const unsigned char *q)
{
    int lo = 0, hi = pl->n_live;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (pl->live[mid].mem + pl->live[mid].size <= q)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static pool_buf *pool_find(const vt_arena *a, const void *p)
{
    const struct vt_pool *pl = a->pool;
    if (!pl || !p)
        return NULL;
    const unsigned char *q = p;
    int i = live_search(pl, q);
    return i < pl->n_live && pl->live[i].mem <= q ? &pl->live[i] : NULL;
}

static void pool_give_back(vt_arena *a, pool_buf *b)
{
    struct vt_pool *pl = a->pool;
    pl->rec[b->idx].t1 = pl->clock++;
    a->pool_used -= b->size;
    if (a->pool_poison)
        memset(b->mem, 0xff, b->size); /* all-ones floats are NaNs */
    if (b->own_mem) {
        free(b->mem);
        a->pool_held -= b->size;
    }
    int i = (int)(b - pl->live);
    memmove(&pl->live[i], &pl->live[i + 1], (size_t)(pl->n_live - i - 1) * sizeof *b);
    pl->n_live--;
}

static void *grow(void *p, int *cap, size_t elem)
{
    int nc = *cap ? 2 * *cap : 64;
    void *q = realloc(p, (size_t)nc * elem);
    VT_ASSERT(q, "out of memory");
    *cap = nc;
    return q;
}

void *vt_arena_pool_take(vt_arena *a, size_t bytes)
{
    size_t need = (bytes + 63) & ~(size_t)63;
    if (need == 0)
        need = 64;
    if (!a->pool) {
        a->pool = calloc(1, sizeof *a->pool);
        VT_ASSERT(a->pool, "out of memory");
    }
    struct vt_pool *pl = a->pool;
    if (pl->n_rec == pl->cap_rec)
        pl->rec = grow(pl->rec, &pl->cap_rec, sizeof *pl->rec);
    int idx = pl->n_rec++;
    pl->rec[idx] = (pool_req){need, 0, pl->clock++, -1};
    unsigned char *mem = NULL;
    int i = 0;
    if (idx < pl->n_plan && pl->plan[idx].size == need) {
        /* The plan holds only if the step has kept to it so far: the
         * buffer's place must be free. */
        unsigned char *m = pl->region + pl->plan[idx].off;
        i = live_search(pl, m);
        if (i == pl->n_live || pl->live[i].mem >= m + need)
            mem = m;
    }
    int own = mem == NULL;
    if (own) {
        mem = vt_alloc_big(need);
        VT_ASSERT(mem, "out of memory allocating a %zu-byte buffer", need);
        a->pool_held += need;
        pl->own_bytes += need;
        i = live_search(pl, mem);
    }
    if (pl->n_live == pl->cap_live)
        pl->live = grow(pl->live, &pl->cap_live, sizeof *pl->live);
    memmove(&pl->live[i + 1], &pl->live[i], (size_t)(pl->n_live - i) * sizeof *pl->live);
    pl->live[i] = (pool_buf){mem, need, 1, 0, own, idx};
    pl->n_live++;
    a->pool_used += need;
    if (a->pool_used > a->pool_peak)
        a->pool_peak = a->pool_used;
    return mem;
}

void vt_arena_pool_drop(vt_arena *a, const void *p)
{
    pool_buf *b = pool_find(a, p);
    if (!b || !b->owned)
        return;
    b->owned = 0;
    if (b->pins == 0)
        pool_give_back(a, b);
}

void vt_arena_pool_pin(vt_arena *a, const void *p, int delta)
{
    pool_buf *b = pool_find(a, p);
    if (!b)
        return;
    b->pins += delta;
    VT_ASSERT(b->pins >= 0, "pool buffer unpinned more often than pinned");
    if (b->pins == 0 && !b->owned)
        pool_give_back(a, b);
}

const void *vt_arena_pool_base(const vt_arena *a, const void *p)
{
    const pool_buf *b = pool_find(a, p);
    return b ? b->mem : NULL;
}

int vt_arena_pool_pins(const vt_arena *a, const void *p)
{
    const pool_buf *b = pool_find(a, p);
    return b ? b->pins : -1;
}

static int by_size_desc(const void *pa, const void *pb)
{
    const pool_req *a = *(pool_req *const *)pa, *b = *(pool_req *const *)pb;
    if (a->size != b->size)
        return a->size < b->size ? 1 : -1;
    return (a->t0 > b->t0) - (a->t0 < b->t0);
}

static int by_off(const void *pa, const void *pb)
{
    const pool_req *a = *(pool_req *const *)pa, *b = *(pool_req *const *)pb;
    return (a->off > b->off) - (a->off < b->off);
}

static int by_area_desc(const void *pa, const void *pb)
{
    const pool_req *a = *(pool_req *const *)pa, *b = *(pool_req *const *)pb;
    double ka = (double)a->size * (double)(a->t1 - a->t0);
    double kb = (double)b->size * (double)(b->t1 - b->t0);
    if (ka != kb)
        return ka < kb ? 1 : -1;
    return (a->t0 > b->t0) - (a->t0 < b->t0);
}

/* Offsets for the recorded requests in the given placing order; returns
 * the region size. */
static size_t plan_order(pool_req *r, int n, int (*cmp)(const void *, const void *))
{
    pool_req **order = malloc((size_t)(n ? n : 1) * sizeof *order);
    pool_req **near = malloc((size_t)(n ? n : 1) * sizeof *near);
    VT_ASSERT(order && near, "out of memory");
    for (int i = 0; i < n; i++)
        order[i] = &r[i];
    qsort(order, (size_t)n, sizeof *order, cmp);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        pool_req *q = order[i];
        int m = 0;
        for (int j = 0; j < i; j++)
            if (order[j]->t0 < q->t1 && q->t0 < order[j]->t1)
                near[m++] = order[j];
        qsort(near, (size_t)m, sizeof *near, by_off);
        size_t off = 0;
        for (int j = 0; j < m && near[j]->off < off + q->size; j++)
            if (near[j]->off + near[j]->size > off)
                off = near[j]->off + near[j]->size;
        q->off = off;
        if (off + q->size > total)
            total = off + q->size;
    }
    free(order);
    free(near);
    return total;
}

/* Two placing orders, the smaller region wins: largest first, or largest
 * size x lifetime first (better when a long-lived small buffer would
 * otherwise split the space the large short-lived ones share). */
static size_t plan_offsets(pool_req *r, int n)
{
    size_t a = plan_order(r, n, by_area_desc);
    size_t b = plan_order(r, n, by_size_desc);
    return a < b ? plan_order(r, n, by_area_desc) : b;
}

static int same_requests(const struct vt_pool *pl)
{
    if (pl->n_rec != pl->n_plan)
        return 0;
    for (int i = 0; i < pl->n_rec; i++)
        if (pl->rec[i].size != pl->plan[i].size || pl->rec[i].t0 != pl->plan[i].t0 ||
            pl->rec[i].t1 != pl->plan[i].t1)
            return 0;
    return 1;
}

/* Every buffer goes back; if the step's requests differ from the plan, the
 * region is laid out again for them. */
static void pool_reset(vt_arena *a)
{
    struct vt_pool *pl = a->pool;
    if (!pl)
        return;
    while (pl->n_live > 0)
        pool_give_back(a, &pl->live[pl->n_live - 1]);
    if (!same_requests(pl)) {
        size_t size = plan_offsets(pl->rec, pl->n_rec);
        free(pl->region);
        a->pool_held -= pl->region_size;
        pl->region = size ? vt_alloc_big(size) : NULL;
        VT_ASSERT(!size || pl->region, "out of memory allocating a %zu-byte pool", size);
        pl->region_size = size;
        a->pool_held += size;
        free(pl->plan);
        pl->plan = pl->rec;
        pl->n_plan = pl->n_rec;
        pl->rec = NULL;
        pl->cap_rec = 0;
#ifdef __GLIBC__
        /* The unplanned step's buffers went back to malloc; glibc keeps
         * freed heap pages resident unless asked, and from the next step
         * on the region serves them. */
        if (pl->own_bytes >= ((size_t)64 << 20))
            malloc_trim(0);
#endif
    }
    pl->own_bytes = 0;
    pl->n_rec = 0;
    pl->clock = 0;
}
