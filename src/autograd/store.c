/* store.c - parameters and buffers in one long-lived data and grad block. */
#include "vt_autograd.h"

#include <string.h>

void vt_store_init(vt_store *s) { memset(s, 0, sizeof *s); }

void vt_store_free(vt_store *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->p[i].name);
    free(s->p);
    free(s->data);
    free(s->grad_mem);
    memset(s, 0, sizeof *s);
}

int vt_store_add(vt_store *s, const char *name, int ndim, const int *shape,
                 int trainable)
{
    VT_ASSERT(!s->data, "vt_store_add after finalize");
    VT_ASSERT(ndim >= 1 && ndim <= VT_MAX_DIMS, "bad ndim %d", ndim);
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 32;
        vt_param *p = realloc(s->p, (size_t)cap * sizeof *p);
        VT_ASSERT(p, "out of memory");
        s->p = p;
        s->cap = cap;
    }
    vt_param *p = &s->p[s->n];
    memset(p, 0, sizeof *p);
    p->name = strdup(name);
    VT_ASSERT(p->name, "out of memory");
    p->t.ndim = ndim;
    memcpy(p->t.shape, shape, (size_t)ndim * sizeof(int));
    p->t.numel = vt_shape_numel(ndim, shape);
    p->t.requires_grad = trainable;
    p->trainable = trainable;
    p->lr_mult = 1.0f;
    /* Keep every view 64-byte aligned for the vector kernels. */
    p->offset = s->total;
    s->total += (p->t.numel + 15) & ~(size_t)15;
    return s->n++;
}

void vt_store_finalize(vt_store *s)
{
    size_t bytes = (s->total ? s->total : 16) * sizeof(float);
    s->data = aligned_alloc(64, bytes);
    /* calloc rather than aligned_alloc + memset: fresh pages are zero
     * already, and an evaluation never touches them. */
    s->grad_mem = calloc(bytes + 64, 1);
    VT_ASSERT(s->data && s->grad_mem, "out of memory allocating %zu parameter bytes", bytes);
    s->grad = (float *)(((uintptr_t)s->grad_mem + 63) & ~(uintptr_t)63);
    memset(s->data, 0, bytes);
    for (int i = 0; i < s->n; i++) {
        s->p[i].t.data = s->data + s->p[i].offset;
        s->p[i].t.grad = s->p[i].trainable ? s->grad + s->p[i].offset : NULL;
    }
}

vt_tensor *vt_store_tensor(vt_store *s, int idx)
{
    VT_ASSERT(idx >= 0 && idx < s->n, "parameter index %d out of range", idx);
    return &s->p[idx].t;
}

vt_param *vt_store_find(vt_store *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->p[i].name, name) == 0)
            return &s->p[i];
    return NULL;
}

void vt_store_zero_grad(vt_store *s)
{
    if (s->grad)
        memset(s->grad, 0, s->total * sizeof(float));
}

size_t vt_store_trainable_count(const vt_store *s)
{
    size_t n = 0;
    for (int i = 0; i < s->n; i++)
        if (s->p[i].trainable)
            n += s->p[i].t.numel;
    return n;
}
