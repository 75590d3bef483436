/* test_splits.c - classInd.txt and train/test list parsing on fixtures that
 * reproduce the official UCF101 files byte for byte in format (CRLF, one
 * space, a final CRLF, test lists without a label column, the
 * HandstandPushups/v_HandStandPushups_ spelling), on user-made variants,
 * on every error path (file:line messages), and on the real files in
 * ../shared/data/ucfTrainTestlist when they are present. */
#define _XOPEN_SOURCE 700
#include "vt_test.h"
#include "vt_data.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Temporary directories ------------------------------------------- */

static char tmpdir[256];

static void mk_tmp(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/vt_splits_XXXXXX", base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(p);
}

static void rm_tmp(void) { nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void put(const char *name, const char *bytes)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(bytes, 1, strlen(bytes), f);
    fclose(f);
}

/* ---- Fixtures in the official format ---------------------------------- */

/* Four of the real classes with their real spelling; numbering 1..4 as a
 * classInd.txt of this dataset would have it. */
static const char *CLASSIND =
    "1 ApplyEyeMakeup\r\n"
    "2 ApplyLipstick\r\n"
    "3 HandstandPushups\r\n"
    "4 YoYo\r\n";

/* Training groups 08..25, test groups 01..07, as split 1. The folder is
 * "HandstandPushups" but the files say "HandStand", as in UCF-101. */
static const char *TRAIN1 =
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi 1\r\n"
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g25_c07.avi 1\r\n"
    "ApplyLipstick/v_ApplyLipstick_g08_c01.avi 2\r\n"
    "HandstandPushups/v_HandStandPushups_g08_c01.avi 3\r\n"
    "HandstandPushups/v_HandStandPushups_g24_c04.avi 3\r\n"
    "YoYo/v_YoYo_g08_c01.avi 4\r\n"
    "YoYo/v_YoYo_g25_c05.avi 4\r\n";

static const char *TEST1 =
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n"
    "ApplyLipstick/v_ApplyLipstick_g01_c01.avi\r\n"
    "ApplyLipstick/v_ApplyLipstick_g07_c04.avi\r\n"
    "HandstandPushups/v_HandStandPushups_g01_c01.avi\r\n"
    "YoYo/v_YoYo_g07_c04.avi\r\n";

/* Split 2 moves groups 08..14 to the test side. */
static const char *TRAIN2 =
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\r\n"
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g25_c07.avi 1\r\n"
    "ApplyLipstick/v_ApplyLipstick_g01_c01.avi 2\r\n"
    "ApplyLipstick/v_ApplyLipstick_g07_c04.avi 2\r\n"
    "HandstandPushups/v_HandStandPushups_g01_c01.avi 3\r\n"
    "HandstandPushups/v_HandStandPushups_g24_c04.avi 3\r\n"
    "YoYo/v_YoYo_g07_c04.avi 4\r\n"
    "YoYo/v_YoYo_g25_c05.avi 4\r\n";

static const char *TEST2 =
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\r\n"
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi\r\n"
    "ApplyLipstick/v_ApplyLipstick_g08_c01.avi\r\n"
    "HandstandPushups/v_HandStandPushups_g08_c01.avi\r\n"
    "YoYo/v_YoYo_g08_c01.avi\r\n";

static void write_official(void)
{
    put("classInd.txt", CLASSIND);
    put("trainlist01.txt", TRAIN1);
    put("testlist01.txt", TEST1);
}

/* The fixture's own format, checked so a careless edit cannot turn it into
 * something the real files are not. */
START_TEST(fixture_matches_official_format)
{
    const char *all[] = {CLASSIND, TRAIN1, TEST1, TRAIN2, TEST2};
    for (int k = 0; k < 5; k++) {
        const char *s = all[k];
        size_t n = strlen(s);
        ck_assert(n > 2 && s[n - 2] == '\r' && s[n - 1] == '\n');
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '\n')
                ck_assert_int_eq(s[i - 1], '\r');
            ck_assert(s[i] != '\t');
            if (s[i] == ' ')
                ck_assert(s[i + 1] != ' ' && s[i + 1] != '\r' && i > 0 && s[i - 1] != '\n');
        }
    }
}
END_TEST

START_TEST(official_format_parses)
{
    mk_tmp();
    write_official();
    vt_split s;
    char err[512] = "";
    int rc = vt_split_load(tmpdir, 1, &s, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_int_eq(s.n_classes, 4);
    ck_assert_str_eq(s.classes[0], "ApplyEyeMakeup");
    ck_assert_str_eq(s.classes[2], "HandstandPushups");
    ck_assert_str_eq(s.classes[3], "YoYo");
    ck_assert_int_eq(s.n_train, 8);
    ck_assert_int_eq(s.n_test, 5);
    /* Paths keep their spelling; no CR left at the end of a name. */
    ck_assert_str_eq(s.train[4].path, "HandstandPushups/v_HandStandPushups_g08_c01.avi");
    ck_assert_str_eq(s.test[4].path, "YoYo/v_YoYo_g07_c04.avi");
    const int want_train[8] = {0, 0, 0, 1, 2, 2, 3, 3};
    const int want_group[8] = {8, 8, 25, 8, 8, 24, 8, 25};
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(s.train[i].label, want_train[i]);
        ck_assert_int_eq(s.train[i].group, want_group[i]);
        ck_assert_int_eq(s.train[i].line, i + 1);
    }
    /* Test list: no label column, the label comes from the folder. */
    const int want_test[5] = {0, 1, 1, 2, 3};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(s.test[i].label, want_test[i]);
    ck_assert_int_eq(s.test[2].group, 7);
    int sg = -1, sv = -1;
    vt_split_overlap(&s, &sg, &sv);
    ck_assert_int_eq(sg, 0);
    ck_assert_int_eq(sv, 0);
    ck_assert_int_eq(vt_split_count(tmpdir), 1);
    vt_split_free(&s);
    rm_tmp();
}
END_TEST

/* Test lists with a label column (some copies of the lists have one) give
 * the same split, and the labels are validated against the folder. */
START_TEST(test_list_with_labels)
{
    mk_tmp();
    write_official();
    put("testlist01.txt",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\r\n"
        "ApplyLipstick/v_ApplyLipstick_g01_c01.avi 2\r\n"
        "ApplyLipstick/v_ApplyLipstick_g07_c04.avi 2\r\n"
        "HandstandPushups/v_HandStandPushups_g01_c01.avi 3\r\n"
        "YoYo/v_YoYo_g07_c04.avi 4\r\n");
    vt_split s;
    char err[512] = "";
    ck_assert_msg(vt_split_load(tmpdir, 1, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(s.n_test, 5);
    const int want[5] = {0, 1, 1, 2, 3};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(s.test[i].label, want[i]);
    vt_split_free(&s);
    put("testlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 2\r\n");
    ck_assert_int_eq(vt_split_load(tmpdir, 1, &s, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "testlist01.txt:1:") && strstr(err, "ApplyLipstick") &&
                      strstr(err, "ApplyEyeMakeup"), "%s", err);
    rm_tmp();
}
END_TEST

/* Hand-made lists: LF only, no final newline, blanks around fields, tabs,
 * empty lines, a byte-order mark. Same result as the official bytes. */
START_TEST(tolerant_variants)
{
    mk_tmp();
    put("classInd.txt", "\xEF\xBB\xBF" "1 ApplyEyeMakeup\n2\tApplyLipstick  \n\n"
                        "3 HandstandPushups\n4 YoYo");
    put("trainlist01.txt",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1 \n"
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi\t1\r\n"
        "\r\n"
        "  ApplyEyeMakeup/v_ApplyEyeMakeup_g25_c07.avi   1\n"
        "ApplyLipstick/v_ApplyLipstick_g08_c01.avi 2\n"
        "HandstandPushups/v_HandStandPushups_g08_c01.avi 3\n"
        "handstandpushups/v_HandStandPushups_g24_c04.avi 3\n" /* case differs */
        "YoYo/v_YoYo_g08_c01.avi\n"                           /* no label */
        "YoYo/v_YoYo_g25_c05.avi 4");
    put("testlist01.txt", TEST1);
    vt_split s;
    char err[512] = "";
    ck_assert_msg(vt_split_load(tmpdir, 1, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(s.n_classes, 4);
    ck_assert_str_eq(s.classes[0], "ApplyEyeMakeup");
    ck_assert_str_eq(s.classes[1], "ApplyLipstick");
    ck_assert_int_eq(s.n_train, 8);
    const int want[8] = {0, 0, 0, 1, 2, 2, 3, 3};
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(s.train[i].label, want[i]);
    ck_assert_str_eq(s.train[2].path, "ApplyEyeMakeup/v_ApplyEyeMakeup_g25_c07.avi");
    ck_assert_int_eq(s.train[2].line, 4);
    ck_assert_str_eq(s.train[7].path, "YoYo/v_YoYo_g25_c05.avi");
    vt_split_free(&s);
    rm_tmp();
}
END_TEST

/* Any folder-per-class tree: paths with blanks, deeper folders, labels for
 * files outside class folders, names without UCF's group tag. */
START_TEST(other_datasets)
{
    mk_tmp();
    put("classInd.txt", "1 cat\n2 dog walking\n");
    put("trainlist01.txt", "cat/my clip 1.mp4 1\ncat/a.mkv\nextra/b.avi 2\n"
                           "dog walking/c.webm 2\n");
    put("testlist01.txt", "cat/d.mp4\n");
    vt_split s;
    char err[512] = "";
    ck_assert_msg(vt_split_load(tmpdir, 1, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(s.classes[1], "dog walking");
    ck_assert_int_eq(s.n_train, 4);
    ck_assert_str_eq(s.train[0].path, "cat/my clip 1.mp4");
    ck_assert_int_eq(s.train[0].label, 0);
    ck_assert_int_eq(s.train[2].label, 1);
    ck_assert_int_eq(s.train[3].label, 1);
    ck_assert_int_eq(s.train[0].group, -1);
    vt_split_free(&s);
    rm_tmp();
}
END_TEST

/* Each broken input gives -1 and a message naming file:line. */
typedef struct {
    const char *file, *bytes, *want1, *want2;
} bad_case;

START_TEST(errors_name_file_and_line)
{
    const bad_case cases[] = {
        {"trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
                            "YoYo/v_YoYo_g08_c01.avi 5\r\n",
         "trainlist01.txt:2:", "outside 1..4"},
        {"trainlist01.txt", "YoYo/v_YoYo_g08_c01.avi 0\r\n", "trainlist01.txt:1:",
         "outside"},
        {"trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
                            "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi 1\r\n"
                            "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c03.avi 4\r\n",
         "trainlist01.txt:3:", "folder \"ApplyEyeMakeup\""},
        {"testlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n"
                           "Surfing/v_Surfing_g01_c01.avi\r\n",
         "testlist01.txt:2:", "\"Surfing\" is not a class"},
        {"testlist01.txt", "v_YoYo_g01_c01.avi\r\n", "testlist01.txt:1:",
         "neither a class folder nor a label"},
        {"testlist01.txt", "YoYo/v_YoYo_g01_c01.avi\r\nYoYo/v_YoYo_g01_c02.avi\r\n"
                           "YoYo/v_YoYo_g01_c01.avi\r\n",
         "testlist01.txt:3:", "already listed on line 1"},
        {"classInd.txt", "1 ApplyEyeMakeup\r\n2\r\n", "classInd.txt:2:",
         "<number> <class name>"},
        {"classInd.txt", "1 ApplyEyeMakeup\r\n1 YoYo\r\n", "classInd.txt:2:",
         "repeated (first on line 1)"},
        {"classInd.txt", "1 ApplyEyeMakeup\r\n3 YoYo\r\n", "classInd.txt:2:",
         "outside 1..2"},
        {"classInd.txt", "1 YoYo\r\n2 YoYo\r\n", "classInd.txt:2:",
         "class name \"YoYo\" repeated"},
        {"classInd.txt", "", "classInd.txt", "no classes"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        mk_tmp();
        write_official();
        put(cases[k].file, cases[k].bytes);
        vt_split s;
        char err[512] = "";
        int rc = vt_split_load(tmpdir, 1, &s, err, sizeof err);
        ck_assert_msg(rc == -1, "case %zu accepted", k);
        ck_assert_msg(strstr(err, cases[k].want1) && strstr(err, cases[k].want2),
                      "case %zu: message \"%s\" lacks \"%s\" / \"%s\"", k, err,
                      cases[k].want1, cases[k].want2);
        ck_assert_msg(strstr(err, tmpdir) != NULL, "case %zu: no path in \"%s\"", k, err);
        rm_tmp();
    }
    /* A missing list file. */
    mk_tmp();
    write_official();
    vt_split s;
    char err[512] = "";
    ck_assert_int_eq(vt_split_load(tmpdir, 2, &s, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "trainlist02.txt") && strstr(err, "cannot open"), "%s", err);
    rm_tmp();
}
END_TEST

START_TEST(group_overlap_is_counted)
{
    mk_tmp();
    write_official();
    /* Test group 8 of ApplyEyeMakeup is also a training group of it; YoYo's
     * g01 is not (YoYo trains on 08 and 25 only). */
    put("testlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c05.avi\r\n"
                          "YoYo/v_YoYo_g01_c01.avi\r\n"
                          "YoYo/v_YoYo_g08_c01.avi\r\n"); /* also in train */
    vt_split s;
    char err[512] = "";
    ck_assert_msg(vt_split_load(tmpdir, 1, &s, err, sizeof err) == 0, "%s", err);
    int sg, sv;
    vt_split_overlap(&s, &sg, &sv);
    ck_assert_int_eq(sg, 2);
    ck_assert_int_eq(sv, 1);
    vt_split_free(&s);
    rm_tmp();
}
END_TEST

START_TEST(catalog_unites_splits)
{
    mk_tmp();
    write_official();
    put("trainlist02.txt", TRAIN2);
    put("testlist02.txt", TEST2);
    ck_assert_int_eq(vt_split_count(tmpdir), 2);
    vt_catalog c;
    char err[512] = "";
    ck_assert_msg(vt_catalog_load(tmpdir, &c, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.n_splits, 2);
    ck_assert_int_eq(c.n_classes, 4);
    ck_assert_int_eq(c.n, 13); /* 8 + 5 videos, each in both splits */
    for (int i = 1; i < c.n; i++)
        ck_assert(strcmp(c.v[i - 1].path, c.v[i].path) < 0);
    for (int i = 0; i < c.n; i++) {
        signed char m1 = c.member[i * 2], m2 = c.member[i * 2 + 1];
        ck_assert(m1 == 1 || m1 == 2);
        ck_assert(m2 == 1 || m2 == 2);
        /* Groups 01..07 are tested in split 1, 08..14 in split 2. */
        ck_assert_int_eq(m1, c.v[i].group <= 7 ? 2 : 1);
        ck_assert_int_eq(m2, c.v[i].group >= 8 && c.v[i].group <= 14 ? 2 : 1);
    }
    vt_catalog_free(&c);
    /* The same video with two classes in two lists is an error (a path
     * outside the class folders, so each list alone is consistent). */
    char t1[1024];
    snprintf(t1, sizeof t1, "%sextra/x.avi 1\r\n", TRAIN1);
    put("trainlist01.txt", t1);
    put("trainlist02.txt", "extra/x.avi 2\r\n");
    ck_assert_int_eq(vt_catalog_load(tmpdir, &c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "trainlist02.txt:1:") && strstr(err, "trainlist01.txt:9"),
                  "%s", err);
    /* ... and so is a video on both sides of one split. */
    put("trainlist02.txt", TRAIN2);
    put("testlist02.txt", "YoYo/v_YoYo_g25_c05.avi\r\n");
    ck_assert_int_eq(vt_catalog_load(tmpdir, &c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "both trainlist02.txt and testlist02.txt"), "%s", err);
    rm_tmp();
}
END_TEST

/* ---- The real files --------------------------------------------------- */

START_TEST(real_ucf101_lists)
{
    const char *root = getenv("VT_SOURCE_ROOT");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/../shared/data/ucfTrainTestlist", root ? root : ".");
    char probe[1100];
    snprintf(probe, sizeof probe, "%s/classInd.txt", dir);
    if (access(probe, R_OK) != 0) {
        printf("test_splits: SKIP real_ucf101_lists: %s not found\n", dir);
        return;
    }
    const int want[3][2] = {{9537, 3783}, {9586, 3734}, {9624, 3696}};
    ck_assert_int_eq(vt_split_count(dir), 3);
    for (int k = 0; k < 3; k++) {
        vt_split s;
        char err[512] = "";
        ck_assert_msg(vt_split_load(dir, k + 1, &s, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(s.n_classes, 101);
        ck_assert_str_eq(s.classes[0], "ApplyEyeMakeup");
        ck_assert_str_eq(s.classes[36], "HandstandPushups");
        ck_assert_str_eq(s.classes[100], "YoYo");
        ck_assert_int_eq(s.n_train, want[k][0]);
        ck_assert_int_eq(s.n_test, want[k][1]);
        /* Every class on both sides; the test labels (from folders) and the
         * training labels (from the column) name the same classes. */
        int seen_tr[101] = {0}, seen_te[101] = {0};
        unsigned groups_tr = 0, groups_te = 0;
        for (int i = 0; i < s.n_train; i++) {
            seen_tr[s.train[i].label]++;
            ck_assert(s.train[i].group >= 1 && s.train[i].group <= 25);
            groups_tr |= 1u << s.train[i].group;
            ck_assert_ptr_null(strchr(s.train[i].path, '\r'));
        }
        for (int i = 0; i < s.n_test; i++) {
            seen_te[s.test[i].label]++;
            ck_assert(s.test[i].group >= 1 && s.test[i].group <= 25);
            groups_te |= 1u << s.test[i].group;
        }
        for (int c = 0; c < 101; c++)
            ck_assert(seen_tr[c] > 0 && seen_te[c] > 0);
        /* Group-disjoint, and by whole groups: split k tests groups
         * 7k+1..7k+7. */
        ck_assert_uint_eq(groups_tr & groups_te, 0);
        ck_assert_uint_eq(groups_te, ((1u << 7) - 1) << (7 * k + 1));
        int sg, sv;
        vt_split_overlap(&s, &sg, &sv);
        ck_assert_int_eq(sg, 0);
        ck_assert_int_eq(sv, 0);
        printf("test_splits: real split %d: %d classes, %d train, %d test, "
               "test groups %d..%d\n", k + 1, s.n_classes, s.n_train, s.n_test,
               7 * k + 1, 7 * k + 7);
        vt_split_free(&s);
    }
    vt_catalog c;
    char err[512] = "";
    ck_assert_msg(vt_catalog_load(dir, &c, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.n, 13320);
    ck_assert_int_eq(c.n_splits, 3);
    vt_catalog_free(&c);
}
END_TEST

static Suite *splits_suite(void)
{
    Suite *s = suite_create("splits");
    TCase *tc = tcase_create("lists");
    tcase_add_test(tc, fixture_matches_official_format);
    tcase_add_test(tc, official_format_parses);
    tcase_add_test(tc, test_list_with_labels);
    tcase_add_test(tc, tolerant_variants);
    tcase_add_test(tc, other_datasets);
    tcase_add_test(tc, errors_name_file_and_line);
    tcase_add_test(tc, group_overlap_is_counted);
    tcase_add_test(tc, catalog_unites_splits);
    tcase_add_test(tc, real_ucf101_lists);
    suite_add_tcase(s, tc);
    return s;
}

VTT_MAIN(splits_suite)
