/* mkckpt.c - test helper: a checkpoint of a freshly initialised model, as
 * vtrain would write it (parameters, resolved config text, class names),
 * so the tool tests need no training run.
 *
 *   mkckpt CONFIG OUT.h5 [SECTION.KEY=VALUE ...]
 *
 * The class names come from the classInd.txt of [data] splits when it
 * exists. Exit status: 0 written, 1 failure. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "vt_ckpt.h"
#include "vt_run.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: mkckpt CONFIG OUT.h5 [SECTION.KEY=VALUE ...]\n");
        return 1;
    }
    char err[2048];
    vt_run r;
    if (vt_run_load(&r, argv[1], NULL, (const char *const *)argv + 3, argc - 3, err,
                    sizeof err)) {
        fprintf(stderr, "mkckpt: %s\n", err);
        vt_run_free(&r);
        return 1;
    }
    char cls_path[1200];
    snprintf(cls_path, sizeof cls_path, "%s/classInd.txt", r.data_splits);
    char **names = NULL;
    int n_names = 0;
    if (access(cls_path, R_OK) == 0 &&
        vt_classes_read(cls_path, &names, &n_names, err, sizeof err)) {
        fprintf(stderr, "mkckpt: %s\n", err);
        vt_run_free(&r);
        return 1;
    }
    char *text = vt_ini_serialize(&r.ini, VT_INI_SER_DEFAULTS);
    vt_ckpt ck = {0};
    ck.store = &r.model.store;
    ck.config = text;
    ck.classes = (const char *const *)names;
    ck.n_classes = n_names;
    ck.model_name = r.model.name;
    int rc = vt_ckpt_save(argv[2], &ck, err, sizeof err);
    if (rc)
        fprintf(stderr, "mkckpt: %s\n", err);
    free(text);
    if (names)
        vt_classes_free(names, n_names);
    vt_run_free(&r);
    return rc ? 1 : 0;
}
