/* ini.c - strict INI configs checked against a schema (see vt_ini.h).
 *
 * The text is parsed line by line into sections of entries; each entry keeps
 * its raw text (for serialising back exactly what was given), its parsed
 * value (for the getters) and where it came from (for messages).
 */
#include "vt_ini.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vt_autograd.h" /* VT_ASSERT */

/* ==== Small helpers ===================================================== */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    VT_ASSERT(d, "out of memory");
    return d;
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    VT_ASSERT(d, "out of memory");
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int is_blank(int ch) { return ch == ' ' || ch == '\t'; }

static char *trim(char *s)
{
    while (is_blank(*s))
        s++;
    size_t n = strlen(s);
    while (n && is_blank(s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int is_ident(const char *s)
{
    if (!(isalpha((unsigned char)*s) || *s == '_'))
        return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}

static int is_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static int has_control(const char *s)
{
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return 1;
    return 0;
}

/* "FILE:LINE", "FILE" or "--set ARG": where a message points. */
static void where(char *buf, size_t n, const vt_ini *c, int line,
                  const char *origin)
{
    if (origin)
        snprintf(buf, n, "--set %s", origin);
    else if (line > 0)
        snprintf(buf, n, "%s:%d", c->file ? c->file : "<config>", line);
    else
        snprintf(buf, n, "%s", c->file ? c->file : "<config>");
}

/* "[train]" or "[conv3d conv1a]". */
static const char *label(const vt_ini_section *s, char *buf, size_t n)
{
    if (s->schema->kind == VT_INI_RUN)
        snprintf(buf, n, "[%s]", s->type);
    else
        snprintf(buf, n, "[%s %s]", s->type, s->name);
    return buf;
}

/* ==== Did you mean ====================================================== */

/* Optimal string alignment distance: edits plus swaps of neighbours, the
 * usual typos. Names are short; longer ones are simply not compared. */
static int edit_distance(const char *a, const char *b)
{
    enum { M = 64 };
    size_t la = strlen(a), lb = strlen(b);
    if (la >= M || lb >= M)
        return INT_MAX;
    int d[M][M];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

const char *vt_ini_suggest(const char *word, const char *const *cands, int n)
{
    size_t len = strlen(word);
    int max_d = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    const char *best = NULL;
    int best_d = INT_MAX;
    for (int i = 0; i < n; i++) {
        int d = edit_distance(word, cands[i]);
        /* d < |cand| keeps "x" from suggesting "lr". */
        if (d <= max_d && d < (int)strlen(cands[i]) && d < best_d) {
            best = cands[i];
            best_d = d;
        }
    }
    return best;
}

/* " (did you mean 'x'?)" or "". */
static void hint(char *buf, size_t n, const char *word,
                 const char *const *cands, int nc)
{
    const char *s = vt_ini_suggest(word, cands, nc);
    if (s)
        snprintf(buf, n, " (did you mean '%s'?)", s);
    else
        buf[0] = '\0';
}

/* ==== Schema lookups ==================================================== */

static const vt_ini_section_schema *find_type(const vt_ini_schema *sc,
                                              const char *type)
{
    for (int i = 0; i < sc->n_sections; i++)
        if (strcmp(sc->sections[i]->type, type) == 0)
            return sc->sections[i];
    return NULL;
}

static const vt_ini_key *find_spec(const vt_ini_section_schema *ss,
                                   const char *key)
{
    for (int i = 0; i < ss->n_keys; i++)
        if (strcmp(ss->keys[i].key, key) == 0)
            return &ss->keys[i];
    return NULL;
}

static void type_hint(char *buf, size_t n, const vt_ini_schema *sc,
                      const char *word)
{
    const char *c[256];
    int nc = 0;
    for (int i = 0; i < sc->n_sections && nc < 256; i++)
        c[nc++] = sc->sections[i]->type;
    hint(buf, n, word, c, nc);
}

static void key_hint(char *buf, size_t n, const vt_ini_section_schema *ss,
                     const char *word)
{
    const char *c[256];
    int nc = 0;
    for (int i = 0; i < ss->n_keys && nc < 256; i++)
        c[nc++] = ss->keys[i].key;
    hint(buf, n, word, c, nc);
}

/* ==== Values ============================================================ */

static void clear_value(vt_ini_entry *e)
{
    free(e->ints);
    if (e->strs)
        for (int i = 0; i < e->n; i++)
            free(e->strs[i]);
    free(e->strs);
    e->ints = NULL;
    e->strs = NULL;
    e->n = 0;
}

static const char *range_error(double v, unsigned flags)
{
    if ((flags & VT_INI_POSITIVE) && !(v > 0))
        return "must be > 0";
    if ((flags & VT_INI_NONNEG) && !(v >= 0))
        return "must be >= 0";
    if ((flags & VT_INI_UNIT) && !(v >= 0 && v < 1))
        return "must be in [0, 1)";
    return NULL;
}

/* A whole token as an int; why on failure. */
static int parse_int(const char *tok, unsigned flags, int *out, char *why,
                     size_t n)
{
    char *end;
    errno = 0;
    if (!*tok || isspace((unsigned char)*tok)) {
        snprintf(why, n, "expected an integer");
        return -1;
    }
    long v = strtol(tok, &end, 10);
    if (*end) {
        snprintf(why, n, "expected an integer");
        return -1;
    }
    if (errno == ERANGE || v < INT_MIN || v > INT_MAX) {
        snprintf(why, n, "integer out of range");
        return -1;
    }
    const char *r = range_error((double)v, flags);
    if (r) {
        snprintf(why, n, "%s", r);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Splits text on sep into trimmed, malloc'd items; an empty item is an
 * error ("a,,b", "a,"). */
static int split(const char *text, char sep, char ***items, int *n, char *why,
                 size_t wn)
{
    int cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == sep;
    char **v = calloc((size_t)cap, sizeof *v);
    VT_ASSERT(v, "out of memory");
    int k = 0;
    const char *p = text;
    for (;;) {
        const char *q = strchr(p, sep);
        size_t len = q ? (size_t)(q - p) : strlen(p);
        char *raw = xstrndup(p, len);
        char *t = trim(raw);
        if (!*t) {
            free(raw);
            for (int i = 0; i < k; i++)
                free(v[i]);
            free(v);
            snprintf(why, wn, "empty item in a '%c'-separated list", sep);
            return -1;
        }
        v[k++] = xstrdup(t);
        free(raw);
        if (!q)
            break;
        p = q + 1;
    }
    *items = v;
    *n = k;
    return 0;
}

static void free_items(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int check_choice(const char *v, const char *choices, char *why,
                        size_t n)
{
    if (!choices)
        return 0;
    const char *c[64];
    char buf[512];
    snprintf(buf, sizeof buf, "%s", choices);
    int nc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, "|", &save); tok && nc < 64;
         tok = strtok_r(NULL, "|", &save)) {
        if (strcmp(tok, v) == 0)
            return 0;
        c[nc++] = tok;
    }
    char h[128];
    hint(h, sizeof h, v, c, nc);
    snprintf(why, n, "expected one of %s%s", choices, h);
    return -1;
}

/* Parses text per spec into e (replacing its value); why on failure. */
static int parse_value(vt_ini_entry *e, const vt_ini_key *spec,
                       const char *text, char *why, size_t wn)
{
    clear_value(e);
    switch (spec->type) {
    case VT_INI_INT:
        return parse_int(text, spec->flags, &e->i, why, wn);
    case VT_INI_FLOAT: {
        char *end;
        if (!*text || isspace((unsigned char)*text)) {
            snprintf(why, wn, "expected a number");
            return -1;
        }
        double v = strtod(text, &end);
        if (*end || !isfinite(v)) {
            snprintf(why, wn, "expected a number");
            return -1;
        }
        const char *r = range_error(v, spec->flags);
        if (r) {
            snprintf(why, wn, "%s", r);
            return -1;
        }
        e->f = v;
        return 0;
    }
    case VT_INI_BOOL: {
        static const char *const t[] = {"1", "true", "yes", "on"};
        static const char *const f[] = {"0", "false", "no", "off"};
        for (int i = 0; i < 4; i++) {
            if (strcmp(text, t[i]) == 0) {
                e->i = 1;
                return 0;
            }
            if (strcmp(text, f[i]) == 0) {
                e->i = 0;
                return 0;
            }
        }
        snprintf(why, wn, "expected 1/0, true/false, yes/no or on/off");
        return -1;
    }
    case VT_INI_STRING:
        return check_choice(text, spec->choices, why, wn);
    case VT_INI_SHAPE3: {
        char **it;
        int n;
        if (split(text, 'x', &it, &n, why, wn)) {
            snprintf(why, wn, "expected N or TxHxW (e.g. 3 or 1x2x2)");
            return -1;
        }
        int rc = 0;
        if (n != 1 && n != 3) {
            snprintf(why, wn, "expected N or TxHxW (e.g. 3 or 1x2x2), got %d "
                     "sizes", n);
            rc = -1;
        }
        for (int i = 0; i < n && !rc; i++)
            if (parse_int(it[i], spec->flags, &e->shape[i], why, wn)) {
                if (strcmp(why, "expected an integer") == 0)
                    snprintf(why, wn, "expected N or TxHxW (e.g. 3 or 1x2x2)");
                rc = -1;
            }
        if (!rc && n == 1)
            e->shape[1] = e->shape[2] = e->shape[0];
        free_items(it, n);
        return rc;
    }
    case VT_INI_SHAPE2:
    case VT_INI_DIMS: {
        int two = spec->type == VT_INI_SHAPE2;
        const char *fmt = two ? "expected N or HxW (e.g. 3 or 1x2)"
                              : "expected sizes joined by 'x' (e.g. 3x16x112x112)";
        char **it;
        int n;
        if (split(text, 'x', &it, &n, why, wn)) {
            snprintf(why, wn, "%s", fmt);
            return -1;
        }
        int rc = 0;
        if (two ? (n != 1 && n != 2) : (n < 1 || n > VT_INI_MAX_DIMS)) {
            snprintf(why, wn, "%s, got %d sizes", fmt, n);
            rc = -1;
        }
        for (int i = 0; i < n && !rc; i++)
            if (parse_int(it[i], spec->flags, &e->shape[i], why, wn)) {
                if (strcmp(why, "expected an integer") == 0)
                    snprintf(why, wn, "%s", fmt);
                rc = -1;
            }
        if (!rc && two && n == 1)
            e->shape[1] = e->shape[0];
        e->n = two ? 2 : n;
        free_items(it, n);
        return rc;
    }
    case VT_INI_INTS: {
        char **it;
        int n;
        if (split(text, ',', &it, &n, why, wn))
            return -1;
        int *v = malloc((size_t)n * sizeof *v);
        VT_ASSERT(v, "out of memory");
        for (int i = 0; i < n; i++)
            if (parse_int(it[i], spec->flags, &v[i], why, wn)) {
                char tmp[200];
                snprintf(tmp, sizeof tmp, "item %d '%s': %s", i + 1, it[i], why);
                snprintf(why, wn, "%s", tmp);
                free(v);
                free_items(it, n);
                return -1;
            }
        free_items(it, n);
        e->ints = v;
        e->n = n;
        return 0;
    }
    case VT_INI_STRINGS: {
        char **it;
        int n;
        if (split(text, ',', &it, &n, why, wn))
            return -1;
        for (int i = 0; i < n; i++)
            if (check_choice(it[i], spec->choices, why, wn)) {
                free_items(it, n);
                return -1;
            }
        e->strs = it;
        e->n = n;
        return 0;
    }
    }
    VT_ASSERT(0, "bad vt_ini_type %d", (int)spec->type);
    return -1;
}

/* ==== Config structure ================================================== */

void vt_ini_init(vt_ini *c, const vt_ini_schema *schema)
{
    memset(c, 0, sizeof *c);
    c->schema = schema;
}

static void free_entry(vt_ini_entry *e)
{
    clear_value(e);
    free(e->key);
    free(e->text);
    free(e->origin);
}

void vt_ini_free(vt_ini *c)
{
    for (int i = 0; i < c->n; i++) {
        vt_ini_section *s = c->sec[i];
        for (int j = 0; j < s->n; j++)
            free_entry(&s->e[j]);
        free(s->e);
        free(s->type);
        free(s->name);
        free(s->origin);
        free(s);
    }
    free(c->sec);
    free(c->file);
    memset(c, 0, sizeof *c);
}

static vt_ini_section *add_section(vt_ini *c, const vt_ini_section_schema *ss,
                                   const char *name, int line,
                                   const char *origin)
{
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        vt_ini_section **v = realloc(c->sec, (size_t)cap * sizeof *v);
        VT_ASSERT(v, "out of memory");
        c->sec = v;
        c->cap = cap;
    }
    vt_ini_section *s = calloc(1, sizeof *s);
    VT_ASSERT(s, "out of memory");
    s->type = xstrdup(ss->type);
    s->name = xstrdup(name);
    s->line = line;
    s->origin = origin ? xstrdup(origin) : NULL;
    s->schema = ss;
    c->sec[c->n++] = s;
    return s;
}

static vt_ini_entry *add_entry(vt_ini_section *s, const vt_ini_key *spec)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 8;
        vt_ini_entry *v = realloc(s->e, (size_t)cap * sizeof *v);
        VT_ASSERT(v, "out of memory");
        s->e = v;
        s->cap = cap;
    }
    vt_ini_entry *e = &s->e[s->n++];
    memset(e, 0, sizeof *e);
    e->key = xstrdup(spec->key);
    e->spec = spec;
    return e;
}

static vt_ini_entry *find_entry(const vt_ini_section *s, const char *key)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->e[i].key, key) == 0)
            return &s->e[i];
    return NULL;
}

vt_ini_section *vt_ini_find(const vt_ini *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->sec[i]->name, name) == 0)
            return c->sec[i];
    return NULL;
}

/* ==== Parsing =========================================================== */

/* Unquotes a value starting at '"' into out (same size suffices); returns
 * the position after the closing quote, or NULL if there is none. */
static char *unquote(char *p, char *out)
{
    for (p++; *p; p++) {
        if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) {
            *out++ = *++p;
        } else if (*p == '"') {
            *out = '\0';
            return p + 1;
        } else {
            *out++ = *p;
        }
    }
    return NULL;
}

/* Value text of "key = VALUE..." (in place). Returns NULL with why set. */
static char *value_text(char *v, int allow_comments, char *why, size_t wn)
{
    v = trim(v);
    if (*v == '"') {
        char *rest = unquote(v, v);
        if (!rest) {
            snprintf(why, wn, "unterminated quoted value");
            return NULL;
        }
        /* unquote wrote at most as many bytes as it read, so rest still
         * points at the original tail. */
        while (is_blank(*rest))
            rest++;
        if (*rest && !(allow_comments && (*rest == '#' || *rest == ';'))) {
            snprintf(why, wn, "unexpected text after the closing quote");
            return NULL;
        }
        return v;
    }
    if (allow_comments)
        for (char *p = v; *p; p++)
            if ((*p == '#' || *p == ';') && (p == v || is_blank(p[-1]))) {
                *p = '\0';
                break;
            }
    v = trim(v);
    if (!*v) {
        snprintf(why, wn, "missing value");
        return NULL;
    }
    return v;
}

/* Sets key in s from text; loc/origin say where it came from. */
static int set_entry(vt_ini *c, vt_ini_section *s, const char *key,
                     const char *text, int line, const char *origin,
                     char *err, size_t errlen)
{
    char loc[600], lb[300], why[400];
    where(loc, sizeof loc, c, line, origin);
    label(s, lb, sizeof lb);
    const vt_ini_key *spec = find_spec(s->schema, key);
    if (!spec) {
        char h[128];
        key_hint(h, sizeof h, s->schema, key);
        return fail(err, errlen, "%s: unknown key '%s' in %s%s", loc, key, lb, h);
    }
    if (has_control(text))
        return fail(err, errlen, "%s: control character in the value of '%s' in %s",
                    loc, key, lb);
    vt_ini_entry *e = find_entry(s, key);
    if (e && !origin && !e->implicit)
        return fail(err, errlen, "%s: duplicate key '%s' in %s (first on line %d)",
                    loc, key, lb, e->line);
    vt_ini_entry tmp;
    memset(&tmp, 0, sizeof tmp);
    if (parse_value(&tmp, spec, text, why, sizeof why)) {
        clear_value(&tmp);
        return fail(err, errlen, "%s: bad value '%s' for key '%s' in %s: %s", loc,
                    text, key, lb, why);
    }
    if (!e)
        e = add_entry(s, spec);
    clear_value(e);
    free(e->text);
    free(e->origin);
    e->text = xstrdup(text);
    e->line = line;
    e->origin = origin ? xstrdup(origin) : NULL;
    e->implicit = 0;
    e->i = tmp.i;
    e->f = tmp.f;
    memcpy(e->shape, tmp.shape, sizeof e->shape);
    e->n = tmp.n;
    e->ints = tmp.ints;
    e->strs = tmp.strs;
    return 0;
}

static int is_run_type(const vt_ini_schema *sc, const char *name)
{
    const vt_ini_section_schema *ss = find_type(sc, name);
    return ss && ss->kind == VT_INI_RUN;
}

static int parse_header(vt_ini *c, char *line, int ln, vt_ini_section **cur,
                        char *err, size_t errlen)
{
    char loc[600];
    where(loc, sizeof loc, c, ln, NULL);
    char *close = strchr(line, ']');
    if (!close)
        return fail(err, errlen, "%s: section header '%.60s' without ']'", loc, line);
    char *rest = close + 1;
    while (is_blank(*rest))
        rest++;
    if (*rest && *rest != '#' && *rest != ';') {
        close[1] = '\0';
        return fail(err, errlen, "%s: unexpected text after '%.60s'", loc, line);
    }
    char head[80];
    snprintf(head, sizeof head, "%.*s]", (int)(close - line < 70 ? close - line : 70), line);
    *close = '\0';
    char *words[3];
    int nw = 0;
    for (char *p = line + 1; *p;) {
        while (is_blank(*p))
            p++;
        if (!*p)
            break;
        char *q = p;
        while (*q && !is_blank(*q))
            q++;
        if (nw < 3)
            words[nw] = p;
        nw++;
        if (*q)
            *q++ = '\0';
        p = q;
    }
    if (nw < 1 || nw > 2)
        return fail(err, errlen, "%s: expected [TYPE] or [TYPE NAME], got '%s'", loc,
                    head);
    const vt_ini_section_schema *ss = find_type(c->schema, words[0]);
    if (!ss) {
        char h[128];
        type_hint(h, sizeof h, c->schema, words[0]);
        return fail(err, errlen, "%s: unknown section type '%s'%s", loc, words[0], h);
    }
    const char *name;
    if (ss->kind == VT_INI_RUN) {
        if (nw == 2)
            return fail(err, errlen, "%s: [%s] takes no name (got '%s')", loc,
                        words[0], words[1]);
        name = words[0];
        vt_ini_section *prev = vt_ini_find(c, name);
        if (prev)
            return fail(err, errlen, "%s: duplicate section [%s] (first on line %d)",
                        loc, name, prev->line);
    } else {
        if (nw == 1)
            return fail(err, errlen, "%s: layer section [%s] needs a name: [%s NAME]",
                        loc, words[0], words[0]);
        name = words[1];
        if (!is_name(name))
            return fail(err, errlen, "%s: bad layer name '%s' (letters, digits, '_', "
                        "'-')", loc, name);
        if (is_run_type(c->schema, name))
            return fail(err, errlen, "%s: layer name '%s' is a run section type", loc,
                        name);
        vt_ini_section *prev = vt_ini_find(c, name);
        if (prev)
            return fail(err, errlen, "%s: duplicate section name '%s' (first on line "
                        "%d)", loc, name, prev->line);
    }
    *cur = add_section(c, ss, name, ln, NULL);
    return 0;
}

int vt_ini_parse_string(vt_ini *c, const char *text, const char *fname,
                        char *err, size_t errlen)
{
    VT_ASSERT(c->n == 0, "vt_ini_parse_* called twice on one config");
    free(c->file);
    c->file = xstrdup(fname ? fname : "<config>");
    char *buf = xstrdup(text);
    char *p = buf;
    if ((unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
        (unsigned char)p[2] == 0xBF)
        p += 3;
    vt_ini_section *cur = NULL;
    int rc = 0;
    for (int ln = 1; p && !rc; ln++) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        size_t len = strlen(p);
        if (len && p[len - 1] == '\r')
            p[len - 1] = '\0';
        char *line = trim(p);
        p = nl ? nl + 1 : NULL;
        char loc[600];
        where(loc, sizeof loc, c, ln, NULL);
        if (!*line || *line == '#' || *line == ';')
            continue;
        if (*line == '[') {
            rc = parse_header(c, line, ln, &cur, err, errlen);
            continue;
        }
        char *eq = strchr(line, '=');
        if (!eq) {
            rc = fail(err, errlen, "%s: expected '[section]', 'key = value' or a "
                      "comment, got '%.60s'", loc, line);
            continue;
        }
        *eq = '\0';
        char *key = trim(line);
        if (!is_ident(key)) {
            rc = fail(err, errlen, "%s: bad key '%.60s' (expected a name: letters, "
                      "digits, '_')", loc, key);
            continue;
        }
        if (!cur) {
            rc = fail(err, errlen, "%s: key '%s' before any [section]", loc, key);
            continue;
        }
        char why[200];
        char *val = value_text(eq + 1, 1, why, sizeof why);
        if (!val) {
            char lb[300];
            rc = fail(err, errlen, "%s: %s for key '%s' in %s", loc, why, key,
                      label(cur, lb, sizeof lb));
            continue;
        }
        rc = set_entry(c, cur, key, val, ln, NULL, err, errlen);
    }
    free(buf);
    return rc;
}

int vt_ini_parse_file(vt_ini *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *text = malloc(cap);
    VT_ASSERT(text, "out of memory");
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            char *t = realloc(text, cap);
            VT_ASSERT(t, "out of memory");
            text = t;
        }
        size_t got = fread(text + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    int rd_err = ferror(f);
    fclose(f);
    if (rd_err) {
        free(text);
        return fail(err, errlen, "%s: read error", path);
    }
    text[n] = '\0';
    if (strlen(text) != n) {
        free(text);
        return fail(err, errlen, "%s: not a text file (contains a NUL byte)", path);
    }
    int rc = vt_ini_parse_string(c, text, path, err, errlen);
    free(text);
    return rc;
}

/* "--set SECTION.KEY=": the key must be valid for the section; it is
 * removed if set, so a variant switched by an override can shed keys that
 * no longer apply. */
static int remove_entry(vt_ini *c, vt_ini_section *s, const char *key,
                        const char *arg, char *err, size_t errlen)
{
    (void)c;
    if (!find_spec(s->schema, key)) {
        char h[128], lb[300];
        key_hint(h, sizeof h, s->schema, key);
        return fail(err, errlen, "--set %s: unknown key '%s' in %s%s", arg, key,
                    label(s, lb, sizeof lb), h);
    }
    vt_ini_entry *e = find_entry(s, key);
    if (e) {
        free_entry(e);
        size_t i = (size_t)(e - s->e);
        memmove(e, e + 1, (size_t)(s->n - 1 - (int)i) * sizeof *e);
        s->n--;
    }
    return 0;
}

int vt_ini_set(vt_ini *c, const char *arg, char *err, size_t errlen)
{
    char *buf = xstrdup(arg);
    char *eq = strchr(buf, '=');
    char *dot = strchr(buf, '.');
    if (!eq || !dot || dot > eq) {
        free(buf);
        return fail(err, errlen, "--set %s: expected SECTION.KEY=VALUE", arg);
    }
    *eq = '\0';
    *dot = '\0';
    char *sname = trim(buf), *key = trim(dot + 1);
    if (!*sname || !*key) {
        free(buf);
        return fail(err, errlen, "--set %s: expected SECTION.KEY=VALUE", arg);
    }
    vt_ini_section *s = vt_ini_find(c, sname);
    if (!s) {
        const vt_ini_section_schema *ss = find_type(c->schema, sname);
        if (ss && ss->kind == VT_INI_RUN) {
            s = add_section(c, ss, sname, 0, arg);
        } else if (ss) {
            free(buf);
            return fail(err, errlen, "--set %s: layer sections are addressed by "
                        "name, not by type '%s'", arg, ss->type);
        } else {
            const char *cand[512];
            int nc = 0;
            for (int i = 0; i < c->n && nc < 512; i++)
                cand[nc++] = c->sec[i]->name;
            for (int i = 0; i < c->schema->n_sections && nc < 512; i++)
                if (c->schema->sections[i]->kind == VT_INI_RUN)
                    cand[nc++] = c->schema->sections[i]->type;
            char h[128];
            hint(h, sizeof h, sname, cand, nc);
            int rc = fail(err, errlen, "--set %s: no section '%s'%s", arg, sname, h);
            free(buf);
            return rc;
        }
    }
    char why[200];
    int rc;
    if (!*trim(eq + 1)) {
        rc = remove_entry(c, s, key, arg, err, errlen);
        free(buf);
        return rc;
    }
    char *val = value_text(eq + 1, 0, why, sizeof why);
    if (!val) {
        char lb[300];
        rc = fail(err, errlen, "--set %s: %s for key '%s' in %s", arg, why, key,
                  label(s, lb, sizeof lb));
    } else {
        rc = set_entry(c, s, key, val, 0, arg, err, errlen);
    }
    free(buf);
    return rc;
}

int vt_ini_validate(const vt_ini *c, char *err, size_t errlen)
{
    for (int i = 0; i < c->n; i++) {
        const vt_ini_section *s = c->sec[i];
        for (int k = 0; k < s->schema->n_keys; k++) {
            const vt_ini_key *spec = &s->schema->keys[k];
            if (!(spec->flags & VT_INI_REQUIRED) || vt_ini_has(s, spec->key))
                continue;
            char loc[600], lb[300];
            where(loc, sizeof loc, c, s->line, s->origin);
            return fail(err, errlen, "%s: %s: missing required key '%s'", loc,
                        label(s, lb, sizeof lb), spec->key);
        }
    }
    for (int i = 0; i < c->schema->n_sections; i++) {
        const vt_ini_section_schema *ss = c->schema->sections[i];
        if (ss->kind == VT_INI_RUN && ss->required && !vt_ini_find(c, ss->type)) {
            char loc[600];
            where(loc, sizeof loc, c, 0, NULL);
            return fail(err, errlen, "%s: missing required section [%s]", loc,
                        ss->type);
        }
    }
    return 0;
}

int vt_ini_load(vt_ini *c, const char *path, const char *const *sets,
                int n_sets, char *err, size_t errlen)
{
    if (vt_ini_parse_file(c, path, err, errlen))
        return -1;
    for (int i = 0; i < n_sets; i++)
        if (vt_ini_set(c, sets[i], err, errlen))
            return -1;
    return vt_ini_validate(c, err, errlen);
}

/* ==== Getters =========================================================== */

int vt_ini_has(const vt_ini_section *s, const char *key)
{
    if (!s)
        return 0;
    const vt_ini_entry *e = find_entry(s, key);
    return e && !e->implicit;
}

int vt_ini_key_line(const vt_ini_section *s, const char *key)
{
    const vt_ini_entry *e = s ? find_entry(s, key) : NULL;
    return e && !e->implicit ? e->line : 0;
}

/* The entry for key (checked against the schema and type), or NULL if
 * unset. Marks it used. */
static vt_ini_entry *get(vt_ini_section *s, const char *key, vt_ini_type t)
{
    const vt_ini_key *spec = find_spec(s->schema, key);
    VT_ASSERT(spec, "key '%s' is not in the schema of [%s]", key, s->type);
    VT_ASSERT(spec->type == t, "key '%s' of [%s] read with the wrong type", key,
              s->type);
    vt_ini_entry *e = find_entry(s, key);
    if (e)
        e->used = 1;
    return e;
}

/* Records the default a getter returned, so serialising with
 * VT_INI_SER_DEFAULTS writes every value the run used. A default the
 * schema would reject (0 meaning "off" for a positive key) is not recorded:
 * written out, it would make the text unparsable; left out, re-reading
 * gives the same default again. */
static void record_default(vt_ini_section *s, const char *key, const char *text)
{
    const vt_ini_key *spec = find_spec(s->schema, key);
    vt_ini_entry tmp;
    memset(&tmp, 0, sizeof tmp);
    char why[200];
    if (parse_value(&tmp, spec, text, why, sizeof why)) {
        clear_value(&tmp);
        return;
    }
    vt_ini_entry *e = add_entry(s, spec);
    e->text = xstrdup(text);
    e->implicit = 1;
    e->used = 1;
    e->i = tmp.i;
    e->f = tmp.f;
    memcpy(e->shape, tmp.shape, sizeof e->shape);
    e->n = tmp.n; /* dims: rank (lists are never recorded) */
}

int vt_ini_int(vt_ini_section *s, const char *key, int def)
{
    if (!s)
        return def;
    vt_ini_entry *e = get(s, key, VT_INI_INT);
    if (e)
        return e->i;
    char t[32];
    snprintf(t, sizeof t, "%d", def);
    record_default(s, key, t);
    return def;
}

/* Shortest decimal that reads back as the same double. */
static void fmt_double(char *buf, size_t n, double v)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

double vt_ini_float(vt_ini_section *s, const char *key, double def)
{
    if (!s)
        return def;
    vt_ini_entry *e = get(s, key, VT_INI_FLOAT);
    if (e)
        return e->f;
    char t[64];
    fmt_double(t, sizeof t, def);
    record_default(s, key, t);
    return def;
}

int vt_ini_bool(vt_ini_section *s, const char *key, int def)
{
    if (!s)
        return def;
    vt_ini_entry *e = get(s, key, VT_INI_BOOL);
    if (e)
        return e->i;
    record_default(s, key, def ? "1" : "0");
    return def;
}

const char *vt_ini_str(vt_ini_section *s, const char *key, const char *def)
{
    if (!s)
        return def;
    vt_ini_entry *e = get(s, key, VT_INI_STRING);
    if (e)
        return e->text;
    if (!def)
        return NULL;
    record_default(s, key, def);
    e = find_entry(s, key);
    return e ? e->text : def;
}

void vt_ini_shape3(vt_ini_section *s, const char *key, const int *def, int *out)
{
    vt_ini_entry *e = s ? get(s, key, VT_INI_SHAPE3) : NULL;
    if (e) {
        memcpy(out, e->shape, 3 * sizeof(int));
        return;
    }
    VT_ASSERT(def, "required shape3 key '%s' unset (validate first)", key);
    memcpy(out, def, 3 * sizeof(int));
    if (s) {
        char t[64];
        snprintf(t, sizeof t, "%dx%dx%d", def[0], def[1], def[2]);
        record_default(s, key, t);
    }
}

void vt_ini_shape2(vt_ini_section *s, const char *key, const int *def, int *out)
{
    vt_ini_entry *e = s ? get(s, key, VT_INI_SHAPE2) : NULL;
    if (e) {
        memcpy(out, e->shape, 2 * sizeof(int));
        return;
    }
    VT_ASSERT(def, "required shape2 key '%s' unset (validate first)", key);
    memcpy(out, def, 2 * sizeof(int));
    if (s) {
        char t[64];
        snprintf(t, sizeof t, "%dx%d", def[0], def[1]);
        record_default(s, key, t);
    }
}

int vt_ini_dims(vt_ini_section *s, const char *key, const int *def, int ndef,
                int *out, int max)
{
    vt_ini_entry *e = s ? get(s, key, VT_INI_DIMS) : NULL;
    const int *src = e ? e->shape : def;
    int n = e ? e->n : ndef;
    VT_ASSERT(e || def, "required dims key '%s' unset (validate first)", key);
    for (int i = 0; i < n && i < max; i++)
        out[i] = src[i];
    if (!e && s) {
        char t[128];
        size_t o = 0;
        for (int i = 0; i < ndef && o < sizeof t; i++)
            o += (size_t)snprintf(t + o, sizeof t - o, "%s%d", i ? "x" : "", def[i]);
        record_default(s, key, t);
    }
    return n;
}

const int *vt_ini_ints(vt_ini_section *s, const char *key, int *n)
{
    vt_ini_entry *e = s ? get(s, key, VT_INI_INTS) : NULL;
    *n = e ? e->n : 0;
    return e ? e->ints : NULL;
}

const char *const *vt_ini_strs(vt_ini_section *s, const char *key, int *n)
{
    vt_ini_entry *e = s ? get(s, key, VT_INI_STRINGS) : NULL;
    *n = e ? e->n : 0;
    return e ? (const char *const *)e->strs : NULL;
}

/* ==== Reporting ========================================================= */

int vt_ini_errorf(const vt_ini *c, const vt_ini_section *s, const char *key,
                  char *err, size_t errlen, const char *fmt, ...)
{
    char loc[600], what[300], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!s) {
        where(loc, sizeof loc, c, 0, NULL);
        return fail(err, errlen, "%s: %s", loc, msg);
    }
    const vt_ini_entry *e = key ? find_entry(s, key) : NULL;
    if (e && !e->implicit)
        where(loc, sizeof loc, c, e->line, e->origin);
    else
        where(loc, sizeof loc, c, s->line, s->origin);
    if (s->schema->kind == VT_INI_LAYER)
        snprintf(what, sizeof what, "layer '%s'", s->name);
    else
        snprintf(what, sizeof what, "[%s]", s->type);
    return fail(err, errlen, "%s: %s: %s", loc, what, msg);
}

int vt_ini_check_used(const vt_ini *c, char *err, size_t errlen)
{
    for (int i = 0; i < c->n; i++) {
        const vt_ini_section *s = c->sec[i];
        for (int j = 0; j < s->n; j++) {
            const vt_ini_entry *e = &s->e[j];
            if (e->used || e->implicit)
                continue;
            char loc[600], lb[300];
            where(loc, sizeof loc, c, e->line, e->origin);
            return fail(err, errlen, "%s: key '%s' in %s is set but not used", loc,
                        e->key, label(s, lb, sizeof lb));
        }
    }
    return 0;
}

/* ==== Writing =========================================================== */

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (b->n + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        VT_ASSERT(p, "out of memory");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

static int needs_quotes(const char *t)
{
    size_t n = strlen(t);
    if (!n || is_blank(t[0]) || is_blank(t[n - 1]))
        return 1;
    return strpbrk(t, "#;\"\\") != NULL;
}

char *vt_ini_serialize(const vt_ini *c, unsigned flags)
{
    sbuf b = {0};
    puts_(&b, "");
    for (int i = 0; i < c->n; i++) {
        const vt_ini_section *s = c->sec[i];
        if (i)
            puts_(&b, "\n");
        char lb[300];
        puts_(&b, label(s, lb, sizeof lb));
        puts_(&b, "\n");
        for (int j = 0; j < s->n; j++) {
            const vt_ini_entry *e = &s->e[j];
            if (e->implicit && !(flags & VT_INI_SER_DEFAULTS))
                continue;
            puts_(&b, e->key);
            puts_(&b, " = ");
            if (needs_quotes(e->text)) {
                puts_(&b, "\"");
                for (const char *t = e->text; *t; t++) {
                    if (*t == '"' || *t == '\\')
                        puts_(&b, "\\");
                    put(&b, t, 1);
                }
                puts_(&b, "\"");
            } else {
                puts_(&b, e->text);
            }
            puts_(&b, "\n");
        }
    }
    return b.p;
}
