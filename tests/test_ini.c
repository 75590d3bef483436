/* test_ini.c - the strict config parser: one broken config per kind of
 * mistake (the message must name file, line and key or section), overrides,
 * typed getters, error reporting for later (model-building) errors, and
 * serialise -> parse round trips. */
#include "vt_test.h"

#include <string.h>
#include <unistd.h>

#include "vt_ini.h"

/* ==== A schema shaped like the trainer's ================================ */

static const vt_ini_key model_keys[] = {
    {"name", VT_INI_STRING, 0, NULL, NULL},
    {"classes", VT_INI_INT, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, NULL},
    {"input", VT_INI_SHAPE3, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, NULL},
};
static const vt_ini_key data_keys[] = {
    {"root", VT_INI_STRING, 0, NULL, NULL},
    {"split", VT_INI_INT, VT_INI_POSITIVE, NULL, NULL},
    {"clips", VT_INI_INTS, VT_INI_NONNEG, NULL, NULL},
};
static const vt_ini_key train_keys[] = {
    {"lr", VT_INI_FLOAT, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, NULL},
    {"epochs", VT_INI_INT, VT_INI_POSITIVE, NULL, NULL},
    {"batch", VT_INI_INT, VT_INI_POSITIVE, NULL, NULL},
    {"shuffle", VT_INI_BOOL, 0, NULL, NULL},
    {"momentum", VT_INI_FLOAT, VT_INI_UNIT, NULL, NULL},
};
#define ACT "relu|tanh|sigmoid|none"
static const vt_ini_key conv_keys[] = {
    {"filters", VT_INI_INT, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, NULL},
    {"size", VT_INI_SHAPE3, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, NULL},
    {"stride", VT_INI_SHAPE3, VT_INI_POSITIVE, NULL, NULL},
    {"pad", VT_INI_SHAPE3, VT_INI_NONNEG, NULL, NULL},
    {"activation", VT_INI_STRING, 0, ACT, NULL},
    {"batch_norm", VT_INI_BOOL, 0, NULL, NULL},
    {"from", VT_INI_STRINGS, 0, NULL, NULL},
};
static const vt_ini_key pool_keys[] = {
    {"size", VT_INI_SHAPE3, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, NULL},
    {"stride", VT_INI_SHAPE3, VT_INI_POSITIVE, NULL, NULL},
};
static const vt_ini_key linear_keys[] = {
    {"units", VT_INI_INT, VT_INI_REQUIRED | VT_INI_POSITIVE, NULL, NULL},
    {"activation", VT_INI_STRING, 0, ACT, NULL},
    {"dropout", VT_INI_FLOAT, VT_INI_UNIT, NULL, NULL},
    {"from", VT_INI_STRINGS, 0, NULL, NULL},
};
#define SEC(t, k, kind, req) {t, kind, k, (int)(sizeof k / sizeof k[0]), req, NULL}
static const vt_ini_section_schema s_model = SEC("model", model_keys, VT_INI_RUN, 1);
static const vt_ini_section_schema s_data = SEC("data", data_keys, VT_INI_RUN, 0);
static const vt_ini_section_schema s_train = SEC("train", train_keys, VT_INI_RUN, 1);
static const vt_ini_section_schema s_conv = SEC("conv3d", conv_keys, VT_INI_LAYER, 0);
static const vt_ini_section_schema s_pool = SEC("maxpool3d", pool_keys, VT_INI_LAYER, 0);
static const vt_ini_section_schema s_linear = SEC("linear", linear_keys, VT_INI_LAYER, 0);
static const vt_ini_section_schema *const sections[] = {&s_model, &s_data, &s_train,
                                                        &s_conv,  &s_pool, &s_linear};
static const vt_ini_schema schema = {sections, 6};

/* Six valid lines every broken case starts from: its mistakes are on line
 * 7 or later. */
#define BASE "[model]\nclasses = 101\ninput = 16x112x112\n\n[train]\nlr = 0.01\n"

static int load(vt_ini *c, const char *text, char *err, size_t n)
{
    vt_ini_init(c, &schema);
    if (vt_ini_parse_string(c, text, "test.ini", err, n))
        return -1;
    return vt_ini_validate(c, err, n);
}

/* ==== Broken configs ==================================================== */

typedef struct {
    const char *what;
    const char *text;
    const char *where; /* message prefix */
    const char *says;  /* must appear in the message */
} broken;

static const broken cases[] = {
    {"unknown layer type", BASE "[conv3 conv1a]\nfilters = 8\n", "test.ini:7: ",
     "unknown section type 'conv3' (did you mean 'conv3d'?)"},
    {"unknown run section", BASE "[trian]\n", "test.ini:7: ",
     "unknown section type 'trian' (did you mean 'train'?)"},
    {"unknown key, typo", BASE "[conv3d conv1a]\nfitlers = 8\nsize = 3\n", "test.ini:8: ",
     "unknown key 'fitlers' in [conv3d conv1a] (did you mean 'filters'?)"},
    {"unknown key in a run section", BASE "epochz = 3\ncolour = red\n", "test.ini:7: ",
     "unknown key 'epochz' in [train] (did you mean 'epochs'?)"},
    {"missing required key", BASE "\n[conv3d conv1a]\nsize = 3\n", "test.ini:8: ",
     "[conv3d conv1a]: missing required key 'filters'"},
    {"missing required section", "[model]\nclasses = 3\ninput = 8\n", "test.ini: ",
     "missing required section [train]"},
    {"shape with two sizes", BASE "[conv3d c]\nfilters = 4\nsize = 6x4\n", "test.ini:9: ",
     "bad value '6x4' for key 'size' in [conv3d c]: expected N or TxHxW (e.g. 3 or 1x2x2), "
     "got 2 sizes"},
    {"shape with four sizes", BASE "[maxpool3d p]\nsize = 1x2x2x2\n", "test.ini:8: ",
     "bad value '1x2x2x2' for key 'size' in [maxpool3d p]: expected N or TxHxW"},
    {"int given a shape", BASE "[conv3d c]\nfilters = 6x4\nsize = 3\n", "test.ini:8: ",
     "bad value '6x4' for key 'filters' in [conv3d c]: expected an integer"},
    {"duplicate key in a run section", BASE "epochs = 3\nlr = abc\n", "test.ini:8: ",
     "duplicate key 'lr' in [train] (first on line 6)"},
    {"float not a number", "[model]\nclasses = 3\ninput = 8\n[train]\nlr = abc\n",
     "test.ini:5: ", "bad value 'abc' for key 'lr' in [train]: expected a number"},
    {"float infinite", "[train]\nlr = inf\n", "test.ini:2: ",
     "bad value 'inf' for key 'lr' in [train]: expected a number"},
    {"negative where positive", BASE "[conv3d c]\nfilters = -8\nsize = 3\n", "test.ini:8: ",
     "bad value '-8' for key 'filters' in [conv3d c]: must be > 0"},
    {"zero stride axis", BASE "[conv3d c]\nfilters = 8\nsize = 3\nstride = 1x0x1\n",
     "test.ini:10: ", "bad value '1x0x1' for key 'stride' in [conv3d c]: must be > 0"},
    {"negative pad", BASE "[conv3d c]\nfilters = 8\nsize = 3\npad = -1\n", "test.ini:10: ",
     "bad value '-1' for key 'pad' in [conv3d c]: must be >= 0"},
    {"dropout out of [0,1)", BASE "[linear fc]\nunits = 10\ndropout = 1.0\n", "test.ini:9: ",
     "bad value '1.0' for key 'dropout' in [linear fc]: must be in [0, 1)"},
    {"bad bool", BASE "shuffle = maybe\n", "test.ini:7: ",
     "bad value 'maybe' for key 'shuffle' in [train]: expected 1/0, true/false"},
    {"bad choice", BASE "[linear fc]\nunits = 3\nactivation = rleu\n", "test.ini:9: ",
     "bad value 'rleu' for key 'activation' in [linear fc]: expected one of "
     "relu|tanh|sigmoid|none (did you mean 'relu'?)"},
    {"int out of range", BASE "epochs = 99999999999\n", "test.ini:7: ",
     "bad value '99999999999' for key 'epochs' in [train]: integer out of range"},
    {"bad list item", BASE "[data]\nclips = 1, x, 3\n", "test.ini:8: ",
     "bad value '1, x, 3' for key 'clips' in [data]: item 2 'x': expected an integer"},
    {"empty list item", BASE "[linear fc]\nunits = 3\nfrom = a,,b\n", "test.ini:9: ",
     "bad value 'a,,b' for key 'from' in [linear fc]: empty item"},
    {"duplicate layer name", BASE "[conv3d c1]\nfilters = 8\nsize = 3\n[maxpool3d c1]\n",
     "test.ini:10: ", "duplicate section name 'c1' (first on line 7)"},
    {"duplicate run section", BASE "[data]\n[model]\n", "test.ini:8: ",
     "duplicate section [model] (first on line 1)"},
    {"duplicate key", BASE "[conv3d c]\nfilters = 8\nsize = 3\nfilters = 16\n",
     "test.ini:10: ", "duplicate key 'filters' in [conv3d c] (first on line 8)"},
    {"neither section nor key", BASE "[conv3d c]\nfilters 64\n", "test.ini:8: ",
     "expected '[section]', 'key = value' or a comment, got 'filters 64'"},
    {"key before any section", "lr = 0.1\n[train]\n", "test.ini:1: ",
     "key 'lr' before any [section]"},
    {"layer without name", BASE "[conv3d]\n", "test.ini:7: ",
     "layer section [conv3d] needs a name: [conv3d NAME]"},
    {"run section with name", BASE "[data ucf]\n", "test.ini:7: ",
     "[data] takes no name (got 'ucf')"},
    {"three words in header", BASE "[conv3d a b]\n", "test.ini:7: ",
     "expected [TYPE] or [TYPE NAME], got '[conv3d a b]'"},
    {"header without ]", BASE "[conv3d c\n", "test.ini:7: ", "section header '[conv3d c' without ']'"},
    {"text after header", BASE "[data] x\n", "test.ini:7: ", "unexpected text after '[data]'"},
    {"bad layer name", BASE "[conv3d conv.1]\n", "test.ini:7: ",
     "bad layer name 'conv.1' (letters, digits, '_', '-')"},
    {"layer named like a run section", BASE "[conv3d train]\n", "test.ini:7: ",
     "layer name 'train' is a run section type"},
    {"bad key name", BASE "1x = 3\n", "test.ini:7: ", "bad key '1x'"},
    {"missing value", BASE "epochs =\n", "test.ini:7: ",
     "missing value for key 'epochs' in [train]"},
    {"value only a comment", BASE "epochs = # soon\n", "test.ini:7: ",
     "missing value for key 'epochs' in [train]"},
    {"unterminated quote", BASE "[data]\nroot = \"/data\n", "test.ini:8: ",
     "unterminated quoted value for key 'root' in [data]"},
    {"text after quote", BASE "[data]\nroot = \"/data\" x\n", "test.ini:8: ",
     "unexpected text after the closing quote for key 'root' in [data]"},
    {"empty quoted int", BASE "epochs = \"\"\n", "test.ini:7: ",
     "bad value '' for key 'epochs' in [train]: expected an integer"},
    {"control character", BASE "[data]\nroot = a\x01" "b\n", "test.ini:8: ",
     "control character in the value of 'root' in [data]"},
    {"mistake after CRLF lines", "[model]\r\nclasses = 3\r\ninput = 8\r\nnope = 1\r\n",
     "test.ini:4: ", "unknown key 'nope' in [model]"},
};
enum { N_BROKEN = sizeof cases / sizeof cases[0] };

START_TEST(broken_config_is_reported_with_file_and_line)
{
    const broken *b = &cases[_i];
    vt_ini c;
    char err[512] = "";
    int rc = load(&c, b->text, err, sizeof err);
    ck_assert_msg(rc == -1, "%s: accepted", b->what);
    ck_assert_msg(strncmp(err, b->where, strlen(b->where)) == 0,
                  "%s: message should start with '%s': %s", b->what, b->where, err);
    ck_assert_msg(strstr(err, b->says), "%s: message should say '%s': %s", b->what, b->says,
                  err);
    ck_assert_msg(!strchr(err, '\n'), "%s: one line expected: %s", b->what, err);
    printf("%-32s %s\n", b->what, err);
    vt_ini_free(&c);
}
END_TEST

START_TEST(no_suggestion_when_nothing_is_close)
{
    vt_ini c;
    char err[512];
    ck_assert_int_eq(load(&c, BASE "colour = red\n", err, sizeof err), -1);
    ck_assert_str_eq(err, "test.ini:7: unknown key 'colour' in [train]");
    vt_ini_free(&c);
    const char *cands[] = {"conv2_1", "pool2", "fc6"};
    ck_assert_str_eq(vt_ini_suggest("conv2_3", cands, 3), "conv2_1");
    ck_assert_str_eq(vt_ini_suggest("fc7", cands, 3), "fc6");
    ck_assert_ptr_null(vt_ini_suggest("x", cands, 3));
    ck_assert_ptr_null(vt_ini_suggest("resnet", cands, 3));
}
END_TEST

/* ==== A valid config and its values ===================================== */

static const char *const good =
    "\xEF\xBB\xBF# C3D-like, small\n"                 /* 1 */
    "[model]\n"                                        /* 2 */
    "name = \"c3d #1; tiny\"   ; quoted: # kept\n"     /* 3 */
    "classes = 101\n"                                  /* 4 */
    "input = 16x112x112\n"                             /* 5 */
    "\n"                                               /* 6 */
    "[train]\n"                                        /* 7 */
    "  lr=0.003   # trailing comment\n"                /* 8 */
    "epochs = 20\n"                                    /* 9 */
    "shuffle = yes\n"                                  /* 10 */
    "\t; indented comment\n"                           /* 11 */
    "[data]\n"                                         /* 12 */
    "root = /data/ucf#101\n"                           /* 13 */
    "clips = 0, 4 ,8\n"                                /* 14 */
    "[conv3d conv1a]\n"                                /* 15 */
    "filters = 64\n"                                   /* 16 */
    "size = 3\n"                                       /* 17 */
    "pad = 1\n"                                        /* 18 */
    "activation = relu\n"                              /* 19 */
    "batch_norm = 1\n"                                 /* 20 */
    "[maxpool3d pool1]\n"                              /* 21 */
    "size = 1x2x2\n"                                   /* 22 */
    "[conv3d conv2a]\n"                                /* 23 */
    "filters = 128\n"                                  /* 24 */
    "size = 3x3x3\n"                                   /* 25 */
    "from = conv1a, pool1\n"                           /* 26 */
    "[linear fc6]\n"                                   /* 27 */
    "units = 4096\n"                                   /* 28 */
    "dropout = 0.5\n";                                 /* 29 */

START_TEST(getters_return_typed_values)
{
    vt_ini c;
    char err[512];
    ck_assert_msg(load(&c, good, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.n, 7);
    vt_ini_section *m = vt_ini_find(&c, "model"), *t = vt_ini_find(&c, "train");
    vt_ini_section *d = vt_ini_find(&c, "data"), *c1 = vt_ini_find(&c, "conv1a");
    vt_ini_section *p1 = vt_ini_find(&c, "pool1"), *c2 = vt_ini_find(&c, "conv2a");
    vt_ini_section *fc = vt_ini_find(&c, "fc6");
    ck_assert(m && t && d && c1 && p1 && c2 && fc);
    ck_assert_ptr_null(vt_ini_find(&c, "conv3d")); /* layers by name only */
    ck_assert_str_eq(c.sec[3]->name, "conv1a");
    ck_assert_str_eq(c.sec[3]->type, "conv3d");
    ck_assert_int_eq(c.sec[3]->schema->kind, VT_INI_LAYER);

    ck_assert_str_eq(vt_ini_str(m, "name", NULL), "c3d #1; tiny");
    ck_assert_int_eq(vt_ini_int(m, "classes", 0), 101);
    int sh[3];
    vt_ini_shape3(m, "input", NULL, sh);
    ck_assert(sh[0] == 16 && sh[1] == 112 && sh[2] == 112);
    ck_assert(vt_ini_float(t, "lr", 0) == 0.003); /* exactly strtod's value */
    ck_assert_int_eq(vt_ini_int(t, "epochs", 1), 20);
    ck_assert_int_eq(vt_ini_bool(t, "shuffle", 0), 1);
    ck_assert_str_eq(vt_ini_str(d, "root", NULL), "/data/ucf#101");
    int n;
    const int *clips = vt_ini_ints(d, "clips", &n);
    ck_assert(n == 3 && clips[0] == 0 && clips[1] == 4 && clips[2] == 8);
    ck_assert_int_eq(vt_ini_int(c1, "filters", 0), 64);
    vt_ini_shape3(c1, "size", NULL, sh);
    ck_assert(sh[0] == 3 && sh[1] == 3 && sh[2] == 3);
    vt_ini_shape3(c1, "pad", (int[]){0, 0, 0}, sh);
    ck_assert(sh[0] == 1 && sh[1] == 1 && sh[2] == 1);
    ck_assert_str_eq(vt_ini_str(c1, "activation", "none"), "relu");
    ck_assert_int_eq(vt_ini_bool(c1, "batch_norm", 0), 1);
    vt_ini_shape3(p1, "size", NULL, sh);
    ck_assert(sh[0] == 1 && sh[1] == 2 && sh[2] == 2);
    const char *const *from = vt_ini_strs(c2, "from", &n);
    ck_assert(n == 2 && strcmp(from[0], "conv1a") == 0 && strcmp(from[1], "pool1") == 0);
    ck_assert(vt_ini_float(fc, "dropout", 0) == 0.5);

    /* Defaults: returned, recorded, not "set". */
    vt_ini_shape3(c1, "stride", (int[]){1, 2, 2}, sh);
    ck_assert(sh[0] == 1 && sh[1] == 2 && sh[2] == 2);
    ck_assert_int_eq(vt_ini_has(c1, "stride"), 0);
    ck_assert_int_eq(vt_ini_int(t, "batch", 32), 32);
    ck_assert(vt_ini_float(t, "momentum", 0.9) == 0.9);
    ck_assert_int_eq(vt_ini_bool(t, "shuffle", 0), 1);
    ck_assert_ptr_null(vt_ini_strs(c1, "from", &n));
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(vt_ini_int(NULL, "x", 7), 7); /* absent run section */
    /* A default the schema would reject is returned but not written out. */
    ck_assert_int_eq(vt_ini_int(fc, "units", 0), 4096);
    ck_assert_int_eq(vt_ini_int(vt_ini_find(&c, "data"), "split", 0), 0);
    char *ser = vt_ini_serialize(&c, VT_INI_SER_DEFAULTS);
    ck_assert_msg(!strstr(ser, "split") && strstr(ser, "batch = 32\n"), "%s", ser);
    free(ser);
    ck_assert_ptr_null(vt_ini_ints(NULL, "x", &n));

    /* Lines, for later errors. */
    ck_assert_int_eq(c1->line, 15);
    ck_assert_int_eq(vt_ini_key_line(c1, "filters"), 16);
    ck_assert_int_eq(vt_ini_key_line(t, "lr"), 8);
    ck_assert_int_eq(vt_ini_key_line(c1, "stride"), 0);
    ck_assert_int_eq(vt_ini_key_line(fc, "dropout"), 29);
    vt_ini_free(&c);
}
END_TEST

START_TEST(later_errors_point_at_key_or_section)
{
    vt_ini c;
    char err[512];
    ck_assert_msg(load(&c, good, err, sizeof err) == 0, "%s", err);
    vt_ini_section *c2 = vt_ini_find(&c, "conv2a");
    ck_assert_int_eq(vt_ini_errorf(&c, c2, "from", err, sizeof err,
                                   "inputs have %d and %d frames", 16, 8), -1);
    ck_assert_str_eq(err, "test.ini:26: layer 'conv2a': inputs have 16 and 8 frames");
    vt_ini_errorf(&c, c2, NULL, err, sizeof err, "bad");
    ck_assert_str_eq(err, "test.ini:23: layer 'conv2a': bad");
    vt_ini_errorf(&c, c2, "pad", err, sizeof err, "unset key"); /* -> header */
    ck_assert_str_eq(err, "test.ini:23: layer 'conv2a': unset key");
    vt_ini_errorf(&c, vt_ini_find(&c, "train"), "lr", err, sizeof err, "too big");
    ck_assert_str_eq(err, "test.ini:8: [train]: too big");
    vt_ini_errorf(&c, NULL, NULL, err, sizeof err, "no layers");
    ck_assert_str_eq(err, "test.ini: no layers");
    ck_assert_int_eq(vt_ini_set(&c, "conv2a.filters=32", err, sizeof err), 0);
    vt_ini_errorf(&c, c2, "filters", err, sizeof err, "too few");
    ck_assert_str_eq(err, "--set conv2a.filters=32: layer 'conv2a': too few");
    vt_ini_free(&c);
}
END_TEST

START_TEST(unused_keys_are_reported)
{
    vt_ini c;
    char err[512];
    ck_assert_msg(load(&c, BASE "epochs = 3\n", err, sizeof err) == 0, "%s", err);
    vt_ini_section *m = vt_ini_find(&c, "model"), *t = vt_ini_find(&c, "train");
    int sh[3];
    vt_ini_int(m, "classes", 0);
    vt_ini_shape3(m, "input", NULL, sh);
    vt_ini_float(t, "lr", 0);
    ck_assert_int_eq(vt_ini_check_used(&c, err, sizeof err), -1);
    ck_assert_str_eq(err, "test.ini:7: key 'epochs' in [train] is set but not used");
    vt_ini_int(t, "epochs", 1);
    ck_assert_int_eq(vt_ini_check_used(&c, err, sizeof err), 0);
    vt_ini_free(&c);
}
END_TEST

/* ==== Overrides ========================================================= */

START_TEST(overrides_replace_add_and_fail_strictly)
{
    vt_ini c;
    char err[512];
    ck_assert_msg(load(&c, good, err, sizeof err) == 0, "%s", err);
    vt_ini_section *c1 = vt_ini_find(&c, "conv1a"), *t = vt_ini_find(&c, "train");
    /* Replace (layer by name, run section by type), add, last one wins. */
    ck_assert_int_eq(vt_ini_set(&c, "conv1a.filters=32", err, sizeof err), 0);
    ck_assert_int_eq(vt_ini_set(&c, "train.lr=0.1", err, sizeof err), 0);
    ck_assert_int_eq(vt_ini_set(&c, "train.lr = 0.2", err, sizeof err), 0);
    ck_assert_int_eq(vt_ini_set(&c, "conv1a.stride=1x2x2", err, sizeof err), 0);
    ck_assert_int_eq(vt_ini_set(&c, "data.root=/x #y;z", err, sizeof err), 0);
    ck_assert_int_eq(vt_ini_int(c1, "filters", 0), 32);
    ck_assert(vt_ini_float(t, "lr", 0) == 0.2);
    ck_assert_str_eq(vt_ini_str(vt_ini_find(&c, "data"), "root", NULL), "/x #y;z");
    int sh[3];
    vt_ini_shape3(c1, "stride", NULL, sh);
    ck_assert(sh[0] == 1 && sh[1] == 2 && sh[2] == 2);
    ck_assert_int_eq(vt_ini_key_line(c1, "filters"), 0);
    /* Remove. */
    ck_assert(vt_ini_has(c1, "activation"));
    ck_assert_int_eq(vt_ini_set(&c, "conv1a.activation=", err, sizeof err), 0);
    ck_assert(!vt_ini_has(c1, "activation"));
    ck_assert_str_eq(vt_ini_str(c1, "activation", "none"), "none");

    static const struct {
        const char *arg, *msg;
    } bad[] = {
        {"train.lrr=0.01", "--set train.lrr=0.01: unknown key 'lrr' in [train] (did you mean "
                           "'lr'?)"},
        {"train.lr=abc", "--set train.lr=abc: bad value 'abc' for key 'lr' in [train]: "
                         "expected a number"},
        {"conv1a.filters=6x4", "--set conv1a.filters=6x4: bad value '6x4' for key 'filters' "
                               "in [conv3d conv1a]: expected an integer"},
        {"conv1a.size=0", "--set conv1a.size=0: bad value '0' for key 'size' in [conv3d "
                          "conv1a]: must be > 0"},
        {"conv1b.filters=3", "--set conv1b.filters=3: no section 'conv1b' (did you mean "
                             "'conv1a'?)"},
        {"conv3d.filters=3", "--set conv3d.filters=3: layer sections are addressed by name, "
                             "not by type 'conv3d'"},
        {"filters=3", "--set filters=3: expected SECTION.KEY=VALUE"},
        {"train.lr", "--set train.lr: expected SECTION.KEY=VALUE"},
        {"train.nope=", "--set train.nope=: unknown key 'nope' in [train]"},
        {"pool1.units=3", "--set pool1.units=3: unknown key 'units' in [maxpool3d pool1]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(vt_ini_set(&c, bad[i].arg, err, sizeof err), -1);
        ck_assert_str_eq(err, bad[i].msg);
    }
    /* Nothing above changed a value. */
    ck_assert(vt_ini_float(t, "lr", 0) == 0.2);
    ck_assert_int_eq(vt_ini_int(c1, "filters", 0), 32);
    vt_ini_free(&c);
}
END_TEST

/* An override can supply a required key or create a run section; removing
 * a required key makes validation fail naming the override's section. */
START_TEST(overrides_through_load_from_a_file)
{
    char path[] = "/tmp/vt_test_ini_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *text = "[model]\nclasses = 5\ninput = 8\n[train]\nepochs = 2\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    vt_ini c;
    char err[512];
    vt_ini_init(&c, &schema);
    ck_assert_int_eq(vt_ini_load(&c, path, NULL, 0, err, sizeof err), -1);
    char want[600];
    snprintf(want, sizeof want, "%s:4: [train]: missing required key 'lr'", path);
    ck_assert_str_eq(err, want);
    vt_ini_free(&c);

    const char *sets[] = {"train.lr=0.5", "data.split=2"};
    vt_ini_init(&c, &schema);
    ck_assert_msg(vt_ini_load(&c, path, sets, 2, err, sizeof err) == 0, "%s", err);
    ck_assert(vt_ini_float(vt_ini_find(&c, "train"), "lr", 0) == 0.5);
    vt_ini_section *d = vt_ini_find(&c, "data");
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(vt_ini_int(d, "split", 1), 2);
    vt_ini_errorf(&c, d, NULL, err, sizeof err, "x");
    ck_assert_str_eq(err, "--set data.split=2: [data]: x");
    vt_ini_free(&c);

    const char *drop[] = {"train.lr=0.5", "model.classes="};
    vt_ini_init(&c, &schema);
    ck_assert_int_eq(vt_ini_load(&c, path, drop, 2, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:1: [model]: missing required key 'classes'", path);
    ck_assert_str_eq(err, want);
    vt_ini_free(&c);

    const char *typo[] = {"train.lrr=0.01"};
    vt_ini_init(&c, &schema);
    ck_assert_int_eq(vt_ini_load(&c, path, typo, 1, err, sizeof err), -1);
    ck_assert_str_eq(err, "--set train.lrr=0.01: unknown key 'lrr' in [train] (did you mean "
                          "'lr'?)");
    vt_ini_free(&c);
    unlink(path);

    vt_ini_init(&c, &schema);
    ck_assert_int_eq(vt_ini_parse_file(&c, "/nonexistent/x.ini", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "/nonexistent/x.ini: cannot open"), "%s", err);
    vt_ini_free(&c);
}
END_TEST

/* ==== Serialise -> parse ================================================ */

static void assert_same(const vt_ini *a, const vt_ini *b)
{
    ck_assert_int_eq(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        const vt_ini_section *x = a->sec[i], *y = b->sec[i];
        ck_assert_str_eq(x->type, y->type);
        ck_assert_str_eq(x->name, y->name);
        ck_assert_int_eq(x->n, y->n);
        for (int j = 0; j < x->n; j++) {
            ck_assert_str_eq(x->e[j].key, y->e[j].key);
            ck_assert_str_eq(x->e[j].text, y->e[j].text);
        }
    }
}

START_TEST(serialise_parse_round_trip)
{
    vt_ini a, b, d;
    char err[512];
    ck_assert_msg(load(&a, good, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(vt_ini_set(&a, "conv1a.filters=32", err, sizeof err), 0);
    ck_assert_int_eq(vt_ini_set(&a, "data.root= a \"quoted\" \\path #1 ", err, sizeof err), 0);
    ck_assert_int_eq(vt_ini_set(&a, "model.name=\"\"", err, sizeof err), 0);
    ck_assert_int_eq(vt_ini_set(&a, "conv2a.pad=0x1x1", err, sizeof err), 0);
    ck_assert_str_eq(vt_ini_str(vt_ini_find(&a, "data"), "root", NULL),
                     "a \"quoted\" \\path #1");
    ck_assert_str_eq(vt_ini_str(vt_ini_find(&a, "model"), "name", NULL), "");

    char *text = vt_ini_serialize(&a, 0);
    vt_ini_init(&b, &schema);
    ck_assert_msg(vt_ini_parse_string(&b, text, "checkpoint:config", err, sizeof err) == 0,
                  "%s\n%s", err, text);
    ck_assert_int_eq(vt_ini_validate(&b, err, sizeof err), 0);
    assert_same(&a, &b);
    char *text2 = vt_ini_serialize(&b, 0);
    ck_assert_str_eq(text, text2);
    /* The checkpoint's name appears in its messages. */
    vt_ini_errorf(&b, vt_ini_find(&b, "conv1a"), "filters", err, sizeof err, "x");
    ck_assert_str_eq(err, "checkpoint:config:16: layer 'conv1a': x");

    /* Values survive, typed. */
    vt_ini_section *c1 = vt_ini_find(&b, "conv1a");
    ck_assert_int_eq(vt_ini_int(c1, "filters", 0), 32);
    int sh[3];
    vt_ini_shape3(vt_ini_find(&b, "conv2a"), "pad", NULL, sh);
    ck_assert(sh[0] == 0 && sh[1] == 1 && sh[2] == 1);
    ck_assert(vt_ini_float(vt_ini_find(&b, "train"), "lr", 0) == 0.003);

    /* Defaults recorded by getters are written with VT_INI_SER_DEFAULTS. */
    vt_ini_float(vt_ini_find(&a, "train"), "momentum", 0.1 + 0.2);
    vt_ini_shape3(vt_ini_find(&a, "conv1a"), "stride", (int[]){1, 2, 2}, sh);
    char *with = vt_ini_serialize(&a, VT_INI_SER_DEFAULTS);
    char *without = vt_ini_serialize(&a, 0);
    ck_assert_str_eq(without, text);
    ck_assert_msg(strstr(with, "momentum = 0.30000000000000004\n"), "%s", with);
    ck_assert_msg(strstr(with, "stride = 1x2x2\n"), "%s", with);
    vt_ini_init(&d, &schema);
    ck_assert_int_eq(vt_ini_parse_string(&d, with, "ck", err, sizeof err), 0);
    ck_assert(vt_ini_float(vt_ini_find(&d, "train"), "momentum", 0) == 0.1 + 0.2);
    ck_assert(vt_ini_has(vt_ini_find(&d, "conv1a"), "stride"));

    free(text);
    free(text2);
    free(with);
    free(without);
    vt_ini_free(&a);
    vt_ini_free(&b);
    vt_ini_free(&d);
}
END_TEST

static Suite *ini_suite(void)
{
    Suite *s = suite_create("ini");
    TCase *t = tcase_create("ini");
    tcase_add_loop_test(t, broken_config_is_reported_with_file_and_line, 0, N_BROKEN);
    tcase_add_test(t, no_suggestion_when_nothing_is_close);
    tcase_add_test(t, getters_return_typed_values);
    tcase_add_test(t, later_errors_point_at_key_or_section);
    tcase_add_test(t, unused_keys_are_reported);
    tcase_add_test(t, overrides_replace_add_and_fail_strictly);
    tcase_add_test(t, overrides_through_load_from_a_file);
    tcase_add_test(t, serialise_parse_round_trip);
    suite_add_tcase(s, t);
    return s;
}

VTT_MAIN(ini_suite)
