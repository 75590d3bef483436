/* splits.c - classInd.txt and the train/test list files (UCF101's format):
 * parsing, label validation with file:line messages, group overlap, and the
 * catalog of every listed video that vprep stores. */
#include "vt_data.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define FAIL(...)                                                              \
    do {                                                                       \
        snprintf(err, errlen, __VA_ARGS__);                                    \
        goto fail;                                                             \
    } while (0)

/* ==== Reading lines ===================================================== */

/* The whole file, NUL-terminated. */
static char *slurp(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        snprintf(err, errlen, "%s: cannot read", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Iterates over lines, trimming the line ending (LF or CRLF), surrounding
 * blanks and a leading UTF-8 byte-order mark. */
typedef struct {
    char *p, *end;
    int line;
} line_iter;

static char *next_line(line_iter *it)
{
    while (it->p < it->end) {
        char *s = it->p;
        char *nl = memchr(s, '\n', (size_t)(it->end - s));
        char *e = nl ? nl : it->end;
        it->p = nl ? nl + 1 : it->end;
        it->line++;
        if (it->line == 1 && e - s >= 3 && (unsigned char)s[0] == 0xEF &&
            (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF)
            s += 3;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        while (s < e && isspace((unsigned char)*s))
            s++;
        *e = '\0';
        if (s < e)
            return s;
    }
    return NULL;
}

/* Decimal integer filling [s, e) exactly; -1 otherwise. */
static long parse_uint(const char *s, const char *e)
{
    if (s == e || e - s > 9)
        return -1;
    long v = 0;
    for (; s < e; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* ==== classInd.txt ====================================================== */

void vt_classes_free(char **names, int n)
{
    if (!names)
        return;
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int vt_classes_read(const char *path, char ***names_out, int *n_out, char *err,
                    size_t errlen)
{
    size_t len;
    char *buf = slurp(path, &len, err, errlen);
    if (!buf)
        return -1;
    int cap = 128, n = 0;
    char **name = calloc((size_t)cap, sizeof *name);
    long *num = calloc((size_t)cap, sizeof *num);
    int *lines = calloc((size_t)cap, sizeof *lines);
    char **sorted = NULL;
    if (!name || !num || !lines)
        FAIL("%s: out of memory", path);
    line_iter it = {buf, buf + len, 0};
    char *s;
    while ((s = next_line(&it))) {
        char *sp = s;
        while (*sp && !isspace((unsigned char)*sp))
            sp++;
        long k = parse_uint(s, sp);
        char *nm = sp;
        while (*nm && isspace((unsigned char)*nm))
            nm++;
        if (k < 0 || !*nm)
            FAIL("%s:%d: expected \"<number> <class name>\", got \"%s\"", path,
                 it.line, s);
        if (strchr(nm, '/'))
            FAIL("%s:%d: class name \"%s\" contains '/'", path, it.line, nm);
        if (n == cap) {
            cap *= 2;
            char **a = realloc(name, (size_t)cap * sizeof *name);
            if (a)
                name = a;
            long *b = realloc(num, (size_t)cap * sizeof *num);
            if (b)
                num = b;
            int *c = realloc(lines, (size_t)cap * sizeof *lines);
            if (c)
                lines = c;
            if (!a || !b || !c)
                FAIL("%s: out of memory", path);
        }
        name[n] = nm;
        num[n] = k;
        lines[n] = it.line;
        n++;
    }
    if (n == 0)
        FAIL("%s: no classes", path);
    sorted = calloc((size_t)n, sizeof *sorted);
    if (!sorted)
        FAIL("%s: out of memory", path);
    int *first = calloc((size_t)n, sizeof *first);
    if (!first)
        FAIL("%s: out of memory", path);
    for (int i = 0; i < n; i++) {
        if (num[i] < 1 || num[i] > n) {
            free(first);
            FAIL("%s:%d: class number %ld outside 1..%d (the file has %d classes)",
                 path, lines[i], num[i], n, n);
        }
        int k = (int)num[i] - 1;
        if (sorted[k]) {
            int l0 = lines[first[k]];
            free(first);
            FAIL("%s:%d: class number %ld repeated (first on line %d)", path,
                 lines[i], num[i], l0);
        }
        sorted[k] = name[i];
        first[k] = i;
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(name[i], name[j]) == 0) {
                free(first);
                FAIL("%s:%d: class name \"%s\" repeated (first on line %d)",
                     path, lines[j], name[j], lines[i]);
            }
    free(first);
    for (int i = 0; i < n; i++) {
        sorted[i] = strdup(sorted[i]);
        if (!sorted[i]) {
            vt_classes_free(sorted, i);
            sorted = NULL;
            FAIL("%s: out of memory", path);
        }
    }
    free(name);
    free(num);
    free(lines);
    free(buf);
    *names_out = sorted;
    *n_out = n;
    return 0;
fail:
    free(sorted);
    free(name);
    free(num);
    free(lines);
    free(buf);
    return -1;
}

/* ==== List files ======================================================== */

void vt_list_free(vt_list_entry *e, int n)
{
    if (!e)
        return;
    for (int i = 0; i < n; i++)
        free(e[i].path);
    free(e);
}

/* Class index of the first path component, exact match first; -1 if none. */
static int folder_class(const char *path, char *const *classes, int n_classes)
{
    const char *slash = strchr(path, '/');
    if (!slash)
        return -1;
    size_t len = (size_t)(slash - path);
    for (int i = 0; i < n_classes; i++)
        if (strlen(classes[i]) == len && memcmp(classes[i], path, len) == 0)
            return i;
    for (int i = 0; i < n_classes; i++)
        if (strlen(classes[i]) == len && strncasecmp(classes[i], path, len) == 0)
            return i;
    return -1;
}

/* XX of "_gXX_" in the file name (UCF: v_<Class>_gXX_cYY.avi). */
static int parse_group(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (const char *p = strstr(base, "_g"); p; p = strstr(p + 1, "_g")) {
        const char *d = p + 2, *e = d;
        while (isdigit((unsigned char)*e))
            e++;
        if (e > d && *e == '_')
            return (int)parse_uint(d, e);
    }
    return -1;
}

static int cmp_entry_path(const void *a, const void *b)
{
    const vt_list_entry *x = *(const vt_list_entry *const *)a;
    const vt_list_entry *y = *(const vt_list_entry *const *)b;
    int c = strcmp(x->path, y->path);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

int vt_list_read(const char *path, char *const *classes, int n_classes,
                 vt_list_entry **out, int *n_out, char *err, size_t errlen)
{
    size_t len;
    char *buf = slurp(path, &len, err, errlen);
    if (!buf)
        return -1;
    int cap = 1024, n = 0;
    vt_list_entry *e = calloc((size_t)cap, sizeof *e);
    const vt_list_entry **order = NULL;
    if (!e)
        FAIL("%s: out of memory", path);
    line_iter it = {buf, buf + len, 0};
    char *s;
    while ((s = next_line(&it))) {
        /* The label is the last blank-separated token when it is a number
         * and something precedes it; paths may contain blanks. */
        char *end = s + strlen(s);
        char *tok = end;
        while (tok > s && !isspace((unsigned char)tok[-1]))
            tok--;
        long label = -1;
        char *pend = end;
        if (tok > s) {
            long v = parse_uint(tok, end);
            if (v >= 0) {
                label = v;
                pend = tok;
                while (pend > s && isspace((unsigned char)pend[-1]))
                    pend--;
            }
        }
        *pend = '\0';
        if (label == 0 || label > n_classes)
            FAIL("%s:%d: label %ld outside 1..%d (classInd.txt)", path, it.line,
                 label, n_classes);
        int fc = folder_class(s, classes, n_classes);
        int cls;
        if (label > 0) {
            cls = (int)label - 1;
            if (fc >= 0 && fc != cls)
                FAIL("%s:%d: label %ld is class \"%s\" but the video is in "
                     "folder \"%s\"",
                     path, it.line, label, classes[cls], classes[fc]);
        } else if (fc >= 0) {
            cls = fc;
        } else {
            const char *slash = strchr(s, '/');
            if (slash)
                FAIL("%s:%d: folder \"%.*s\" is not a class of classInd.txt "
                     "and the line has no label",
                     path, it.line, (int)(slash - s), s);
            FAIL("%s:%d: \"%s\" has neither a class folder nor a label", path,
                 it.line, s);
        }
        if (n == cap) {
            cap *= 2;
            vt_list_entry *ne = realloc(e, (size_t)cap * sizeof *e);
            if (!ne)
                FAIL("%s: out of memory", path);
            e = ne;
        }
        e[n].path = strdup(s);
        if (!e[n].path)
            FAIL("%s: out of memory", path);
        e[n].label = cls;
        e[n].group = parse_group(s);
        e[n].line = it.line;
        n++;
    }
    /* Duplicates would silently weight a video twice. */
    order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order)
        FAIL("%s: out of memory", path);
    for (int i = 0; i < n; i++)
        order[i] = &e[i];
    qsort(order, (size_t)n, sizeof *order, cmp_entry_path);
    for (int i = 1; i < n; i++)
        if (strcmp(order[i]->path, order[i - 1]->path) == 0)
            FAIL("%s:%d: \"%s\" is already listed on line %d", path,
                 order[i]->line, order[i]->path, order[i - 1]->line);
    free(order);
    free(buf);
    *out = e;
    *n_out = n;
    return 0;
fail:
    free(order);
    vt_list_free(e, n);
    free(buf);
    return -1;
}

/* ==== Splits ============================================================ */

static void list_path(char *buf, size_t len, const char *dir, const char *kind,
                      int split)
{
    snprintf(buf, len, "%s/%slist%02d.txt", dir, kind, split);
}

int vt_split_count(const char *dir)
{
    char a[4096], b[4096];
    int n = 0;
    for (int s = 1; s < 100; s++) {
        list_path(a, sizeof a, dir, "train", s);
        list_path(b, sizeof b, dir, "test", s);
        if (access(a, R_OK) != 0 || access(b, R_OK) != 0)
            break;
        n = s;
    }
    return n;
}

void vt_split_free(vt_split *s)
{
    vt_classes_free(s->classes, s->n_classes);
    vt_list_free(s->train, s->n_train);
    vt_list_free(s->test, s->n_test);
    memset(s, 0, sizeof *s);
}

int vt_split_load(const char *dir, int split, vt_split *s, char *err,
                  size_t errlen)
{
    char p[4096];
    memset(s, 0, sizeof *s);
    s->split = split;
    if (split < 1 || split > 99) {
        snprintf(err, errlen, "split %d: must be 1..99", split);
        return -1;
    }
    snprintf(p, sizeof p, "%s/classInd.txt", dir);
    if (vt_classes_read(p, &s->classes, &s->n_classes, err, errlen) < 0)
        goto fail;
    list_path(p, sizeof p, dir, "train", split);
    if (vt_list_read(p, s->classes, s->n_classes, &s->train, &s->n_train, err,
                     errlen) < 0)
        goto fail;
    list_path(p, sizeof p, dir, "test", split);
    if (vt_list_read(p, s->classes, s->n_classes, &s->test, &s->n_test, err,
                     errlen) < 0)
        goto fail;
    return 0;
fail:
    vt_split_free(s);
    return -1;
}

void vt_split_overlap(const vt_split *s, int *shared_groups, int *shared_videos)
{
    /* Groups are small integers (UCF: 1..25) per class: a bitmap of the
     * training (class, group) pairs, with larger groups compared by scan. */
    enum { G = 128 };
    unsigned char *seen = calloc((size_t)s->n_classes * G, 1);
    int sg = 0, sv = 0;
    for (int i = 0; i < s->n_train; i++) {
        const vt_list_entry *e = &s->train[i];
        if (seen && e->group >= 0 && e->group < G)
            seen[(size_t)e->label * G + (size_t)e->group] = 1;
    }
    for (int i = 0; i < s->n_test; i++) {
        const vt_list_entry *t = &s->test[i];
        if (t->group < 0)
            continue;
        int hit = 0;
        if (seen && t->group < G) {
            hit = seen[(size_t)t->label * G + (size_t)t->group];
        } else {
            for (int j = 0; j < s->n_train && !hit; j++)
                hit = s->train[j].label == t->label && s->train[j].group == t->group;
        }
        sg += hit;
    }
    free(seen);
    const vt_list_entry **a = malloc((size_t)(s->n_train + s->n_test + 1) * sizeof *a);
    if (a) {
        int n = 0;
        for (int i = 0; i < s->n_train; i++)
            a[n++] = &s->train[i];
        for (int i = 0; i < s->n_test; i++)
            a[n++] = &s->test[i];
        qsort(a, (size_t)n, sizeof *a, cmp_entry_path);
        for (int i = 1; i < n; i++)
            sv += strcmp(a[i]->path, a[i - 1]->path) == 0;
        free(a);
    }
    *shared_groups = sg;
    *shared_videos = sv;
}

/* ==== Catalog =========================================================== */

void vt_catalog_free(vt_catalog *c)
{
    vt_classes_free(c->classes, c->n_classes);
    vt_list_free(c->v, c->n);
    free(c->member);
    memset(c, 0, sizeof *c);
}

typedef struct {
    vt_list_entry *e;
    int split, kind; /* kind: 1 train, 2 test */
} tagged;

static int cmp_tagged(const void *a, const void *b)
{
    const tagged *x = a, *y = b;
    int c = strcmp(x->e->path, y->e->path);
    if (c)
        return c;
    return x->split != y->split ? x->split - y->split : x->kind - y->kind;
}

int vt_catalog_load(const char *dir, vt_catalog *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    int ns = vt_split_count(dir);
    if (ns == 0) {
        snprintf(err, errlen, "%s: no trainlist01.txt and testlist01.txt", dir);
        return -1;
    }
    vt_split *sp = calloc((size_t)ns, sizeof *sp);
    tagged *all = NULL;
    if (!sp) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t total = 0;
    for (int s = 0; s < ns; s++) {
        if (vt_split_load(dir, s + 1, &sp[s], err, errlen) < 0)
            goto fail;
        total += (size_t)sp[s].n_train + (size_t)sp[s].n_test;
    }
    all = malloc((total ? total : 1) * sizeof *all);
    if (!all)
        FAIL("out of memory");
    size_t k = 0;
    for (int s = 0; s < ns; s++) {
        for (int i = 0; i < sp[s].n_train; i++)
            all[k++] = (tagged){&sp[s].train[i], s, 1};
        for (int i = 0; i < sp[s].n_test; i++)
            all[k++] = (tagged){&sp[s].test[i], s, 2};
    }
    qsort(all, total, sizeof *all, cmp_tagged);
    c->v = calloc(total ? total : 1, sizeof *c->v);
    c->member = calloc((total ? total : 1) * (size_t)ns, 1);
    if (!c->v || !c->member)
        FAIL("out of memory");
    c->n_splits = ns;
    for (size_t i = 0; i < total;) {
        size_t j = i;
        vt_list_entry *e = all[i].e;
        vt_list_entry *out = &c->v[c->n];
        out->path = strdup(e->path);
        if (!out->path)
            FAIL("out of memory");
        out->label = e->label;
        out->group = e->group;
        out->line = e->line;
        c->n++;
        for (; j < total && strcmp(all[j].e->path, e->path) == 0; j++) {
            const tagged *t = &all[j];
            char p1[64], p2[64];
            snprintf(p1, sizeof p1, "%slist%02d.txt", all[i].kind == 1 ? "train" : "test",
                     all[i].split + 1);
            snprintf(p2, sizeof p2, "%slist%02d.txt", t->kind == 1 ? "train" : "test",
                     t->split + 1);
            if (t->e->label != e->label)
                FAIL("%s/%s:%d: \"%s\" has class \"%s\" here but \"%s\" in %s:%d",
                     dir, p2, t->e->line, e->path, sp[0].classes[t->e->label],
                     sp[0].classes[e->label], p1, e->line);
            signed char *m = &c->member[(size_t)(c->n - 1) * (size_t)ns + (size_t)t->split];
            if (*m && *m != t->kind)
                FAIL("%s: \"%s\" is in both trainlist%02d.txt and testlist%02d.txt",
                     dir, e->path, t->split + 1, t->split + 1);
            *m = (signed char)t->kind;
        }
        i = j;
    }
    c->n_classes = sp[0].n_classes;
    c->classes = sp[0].classes;
    sp[0].classes = NULL;
    sp[0].n_classes = 0;
    for (int s = 0; s < ns; s++)
        vt_split_free(&sp[s]);
    free(sp);
    free(all);
    return 0;
fail:
    for (int s = 0; s < ns; s++)
        vt_split_free(&sp[s]);
    free(sp);
    free(all);
    vt_catalog_free(c);
    return -1;
}
