/* vt_ini.h - strict INI configs checked against a schema.
 *
 * A config describes one run: run sections that occur at most once and are
 * addressed by their type, and layer sections, in order, each with a type
 * and a unique name:
 *
 *     # C3D, first block               <- comment line ('#' or ';')
 *     [train]
 *     lr = 0.003                       ; trailing comment after whitespace
 *     epochs = 20
 *
 *     [conv3d conv1a]                  <- [TYPE NAME]
 *     filters = 64
 *     size = 3                         <- shape3: 3 == 3x3x3
 *     activation = relu
 *
 *     [maxpool3d pool1]
 *     size = 1x2x2
 *     from = conv1a                    <- string list: a, b, c
 *
 * ==== Syntax ============================================================
 *
 *   blank line               ignored
 *   comment                  first non-blank character '#' or ';'
 *   [TYPE] / [TYPE NAME]     section header. TYPE must be a type the schema
 *                            knows; run types take no NAME, layer types
 *                            require one. NAME: letters, digits, '_' and '-'
 *                            (no '.': overrides use it as separator), unique
 *                            in the file and different from every run type.
 *   KEY = VALUE              KEY: a letter or '_', then letters, digits, '_'.
 *                            Whitespace around KEY and VALUE is dropped.
 *   anything else            an error.
 *
 * Trailing comments: an unquoted VALUE ends at the first '#' or ';' that
 * begins it or follows whitespace ("lr = 0.1  # note" gives "0.1"; "a#b"
 * stays "a#b").
 * Quoting: a VALUE may be one double-quoted string, for text holding
 * comment characters or leading/trailing blanks ("path = "/data/run #1"").
 * Inside quotes, \" is a quote and \\ a backslash (any other backslash is
 * literal), and nothing is a comment; after the closing quote only blanks
 * and a comment may follow. Unquoted values are literal (backslashes too).
 * The only way to give an empty string is "". Control characters are
 * rejected. Keys, types, names and values are case-sensitive. Lines may end
 * in CRLF; a UTF-8 byte order mark at the start is skipped.
 *
 * ==== Value types (vt_ini_type) ==========================================
 *
 *   int       decimal, optional sign, fits in an int:       64, -1
 *   float     a finite C number (strtod):                   0.1, 1e-3, 5
 *   bool      1/0, true/false, yes/no, on/off
 *   string    any text; a schema may restrict it to choices "relu|none"
 *   shape3    one int for all three axes, or T x H x W:     3, 3x3x3, 1x2x2
 *   ints      comma-separated ints:                         30, 60, 90
 *   strings   comma-separated non-empty words:              conv2_1, conv2_2
 *
 * Range flags apply to every number of a value (each axis of a shape3, each
 * item of an int list): VT_INI_POSITIVE (> 0), VT_INI_NONNEG (>= 0),
 * VT_INI_UNIT (0 <= x < 1).
 *
 * ==== Overrides =========================================================
 *
 * "--set SECTION.KEY=VALUE" (the caller passes "SECTION.KEY=VALUE"):
 * SECTION is a layer's NAME (conv1a.filters=32) or a run section's TYPE
 * (train.lr=0.1). The key must be valid for that section's type in the
 * schema; it replaces the file's value or adds the key. A run section the
 * file lacks is created. VALUE follows the same rules as in a file, except
 * that '#' and ';' are never comments. Later overrides of the same key win.
 * An empty VALUE ("--set optim.momentum=") removes the key, so a variant
 * switched on the command line can shed keys that no longer apply (use ""
 * for an empty string).
 *
 * ==== Errors ============================================================
 *
 * Every function that can fail on user input returns 0 or -1 and writes
 * exactly one message to err (never prints, never exits); the caller prints
 * it and exits with status 2. Messages name where the problem is:
 *
 *   c3d.ini:14: unknown key 'fitlers' in [conv3d conv1a] (did you mean 'filters'?)
 *   c3d.ini:9: duplicate section name 'conv1a' (first on line 5)
 *   --set train.lrr=0.01: unknown key 'lrr' in [train] (did you mean 'lr'?)
 *   c3d.ini:5: [conv3d conv1a]: missing required key 'filters'
 *   c3d.ini: missing required section [train]
 *
 * "did you mean" is offered when a schema name is within a small edit
 * distance (insert, delete, substitute, swap two neighbours) of the typo.
 *
 * ==== Typical use =======================================================
 *
 *     vt_ini cfg;
 *     vt_ini_init(&cfg, &schema);
 *     if (vt_ini_load(&cfg, path, sets, n_sets, err, sizeof err))
 *         { fprintf(stderr, "%s\n", err); exit(2); }
 *     vt_ini_section *tr = vt_ini_find(&cfg, "train");
 *     double lr = vt_ini_float(tr, "lr", 0.01);
 *     for (int i = 0; i < cfg.n; i++)
 *         if (cfg.sec[i]->schema->kind == VT_INI_LAYER) build(cfg.sec[i]);
 *     if (vt_ini_check_used(&cfg, err, sizeof err)) ...  (exit 2)
 *     char *text = vt_ini_serialize(&cfg, VT_INI_SER_DEFAULTS);  (checkpoint)
 *
 * A shape error found while building: return vt_ini_errorf(&cfg, sec,
 * "filters", err, n, "expects %d channels, got %d", a, b) gives
 * "c3d.ini:15: layer 'conv5a': expects ..." (the key's line, or the
 * section's when key is NULL or unset).
 */
#ifndef VT_INI_H
#define VT_INI_H

#include <stddef.h>

/* ==== Schema ============================================================ */

typedef enum {
    VT_INI_INT,
    VT_INI_FLOAT,
    VT_INI_BOOL,
    VT_INI_STRING,
    VT_INI_SHAPE3,
    VT_INI_INTS,
    VT_INI_STRINGS,
    VT_INI_SHAPE2,  /* one int for both axes, or H x W:        3, 3x3, 1x2 */
    VT_INI_DIMS,    /* 1 to VT_INI_MAX_DIMS ints joined by 'x': 3x16x112x112 */
} vt_ini_type;

#define VT_INI_MAX_DIMS 8

enum {
    VT_INI_REQUIRED = 1 << 0, /* must be set (file or override) */
    VT_INI_POSITIVE = 1 << 1, /* every number > 0 */
    VT_INI_NONNEG = 1 << 2,   /* every number >= 0 */
    VT_INI_UNIT = 1 << 3,     /* every number in [0, 1) */
};

typedef struct {
    const char *key;
    vt_ini_type type;
    unsigned flags;
    const char *choices; /* string(s): "sgd|adam|adamw"; NULL = any text */
    const char *doc;     /* one line for docs and --help; may be NULL */
} vt_ini_key;

typedef enum {
    VT_INI_RUN,   /* [TYPE]: at most once, addressed by TYPE */
    VT_INI_LAYER, /* [TYPE NAME]: any number, in order, addressed by NAME */
} vt_ini_kind;

typedef struct {
    const char *type; /* "train", "conv3d" */
    vt_ini_kind kind;
    const vt_ini_key *keys;
    int n_keys;
    int required;     /* run sections: must be present */
    const char *doc;
} vt_ini_section_schema;

/* Pointers, so modules can contribute their own section schemas
 * (e.g. vt_optim_ini_schema from vt_optim.h). */
typedef struct {
    const vt_ini_section_schema *const *sections;
    int n_sections;
} vt_ini_schema;

/* ==== Parsed config ===================================================== */

typedef struct {
    char *key;
    char *text;      /* the value as given: quotes removed, unescaped */
    int line;        /* line in the file; 0 when set by --set or a default */
    char *origin;    /* the "SECTION.KEY=VALUE" override that set it, or NULL */
    int used;        /* read by a getter */
    int implicit;    /* not given: a default recorded by a getter */
    const vt_ini_key *spec;
    /* Parsed value, by spec->type. */
    int i;           /* int, bool */
    double f;        /* float */
    int shape[VT_INI_MAX_DIMS]; /* shape3, shape2, dims */
    int n;           /* ints / strings: item count */
    int *ints;
    char **strs;
} vt_ini_entry;

typedef struct {
    char *type;
    char *name;      /* layer NAME; run sections: same as type */
    int line;        /* header line; 0 when created by an override */
    char *origin;    /* override that created it, or NULL */
    const vt_ini_section_schema *schema;
    vt_ini_entry *e; /* in file order; overrides of new keys appended */
    int n, cap;
} vt_ini_section;

typedef struct {
    char *file;      /* name used in messages */
    const vt_ini_schema *schema;
    vt_ini_section **sec; /* in file order; stable pointers */
    int n, cap;
} vt_ini;

/* ==== Loading =========================================================== */

void vt_ini_init(vt_ini *c, const vt_ini_schema *schema);
void vt_ini_free(vt_ini *c);

/* Syntax, section types, keys and value formats. Parse once per vt_ini. */
int vt_ini_parse_file(vt_ini *c, const char *path, char *err, size_t errlen);
/* Same from memory (a checkpoint's stored text); fname names it in messages. */
int vt_ini_parse_string(vt_ini *c, const char *text, const char *fname,
                        char *err, size_t errlen);
/* One override "SECTION.KEY=VALUE" (what follows --set). */
int vt_ini_set(vt_ini *c, const char *arg, char *err, size_t errlen);
/* After all overrides: required sections and keys. */
int vt_ini_validate(const vt_ini *c, char *err, size_t errlen);
/* parse_file + every override in order + validate. */
int vt_ini_load(vt_ini *c, const char *path, const char *const *sets,
                int n_sets, char *err, size_t errlen);

/* ==== Reading values ==================================================== */

/* A layer section by NAME or a run section by TYPE; NULL if absent. */
vt_ini_section *vt_ini_find(const vt_ini *c, const char *name);
/* Set explicitly (file or override)? Does not mark the key used. */
int vt_ini_has(const vt_ini_section *s, const char *key);

/* Typed getters. The key must be in the section's schema with that type
 * (else an internal error: a programming mistake, not a user one). They
 * mark the key used; when it is unset they return the default and record
 * it, so vt_ini_serialize(.., VT_INI_SER_DEFAULTS) writes what was used
 * (a default outside the key's declared range, e.g. 0 meaning "off" for a
 * positive key, is returned but not recorded, so the text stays valid).
 * Values were validated when parsed, so getters cannot fail. s may be NULL
 * (an absent run section): the default is returned, nothing recorded. */
int vt_ini_int(vt_ini_section *s, const char *key, int def);
double vt_ini_float(vt_ini_section *s, const char *key, double def);
int vt_ini_bool(vt_ini_section *s, const char *key, int def);
const char *vt_ini_str(vt_ini_section *s, const char *key, const char *def);
/* out[3] = (T, H, W); def may be NULL when the key is required. */
void vt_ini_shape3(vt_ini_section *s, const char *key, const int *def,
                   int *out);
/* out[2] = (H, W); def may be NULL when the key is required. */
void vt_ini_shape2(vt_ini_section *s, const char *key, const int *def,
                   int *out);
/* Up to max sizes into out; returns how many the value has (def, ndef
 * when unset; def may be NULL when the key is required). */
int vt_ini_dims(vt_ini_section *s, const char *key, const int *def, int ndef,
                int *out, int max);
/* Lists: NULL and *n = 0 when unset (no default). Owned by the config. */
const int *vt_ini_ints(vt_ini_section *s, const char *key, int *n);
const char *const *vt_ini_strs(vt_ini_section *s, const char *key, int *n);

/* Line of a key (0 if unset or set by an override) and of a section. */
int vt_ini_key_line(const vt_ini_section *s, const char *key);

/* ==== Reporting later errors ============================================ */

/* Formats "WHERE: WHAT: " + fmt into err and returns -1, where WHERE is
 * FILE:LINE of key (or of the section header when key is NULL or not set
 * in the file; "--set ..." when an override set it) and WHAT is
 * "layer 'NAME'" or "[TYPE]". s may be NULL (then "FILE: " + fmt). */
int vt_ini_errorf(const vt_ini *c, const vt_ini_section *s, const char *key,
                  char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* After building: -1 with "FILE:LINE: key 'k' in [..] is set but not used"
 * for the first explicitly set key no getter read (a key the chosen
 * variant ignores, e.g. momentum with adam). */
int vt_ini_check_used(const vt_ini *c, char *err, size_t errlen);

/* The candidate closest to word by edit distance, if close enough to be a
 * likely typo; else NULL. For "did you mean" in callers' own messages
 * (e.g. an unknown layer in from = ...). */
const char *vt_ini_suggest(const char *word, const char *const *cands, int n);

/* ==== Writing =========================================================== */

enum {
    VT_INI_SER_DEFAULTS = 1, /* also write defaults recorded by getters */
};

/* The resolved config (overrides applied) as INI text, malloc'd; parsing
 * it back gives the same sections, keys and values. Sections in order,
 * one "key = value" per line, values quoted when they need it. */
char *vt_ini_serialize(const vt_ini *c, unsigned flags);

#endif
