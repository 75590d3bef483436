/* vinfo - what a checkpoint holds, and whether it loads.
 *
 *   vinfo CKPT [--params]
 *
 * Prints the model name, training position, optimizer, classes and the
 * parameter table; then rebuilds the model from the stored config and
 * restores every tensor, so exit status 0 means the file is a complete,
 * loadable checkpoint (1: damaged or foreign, 2: usage). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "toolcommon.h"

int main(int argc, char **argv)
{
    const char *path = NULL;
    int params = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--params"))
            params = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: vinfo CKPT [--params]\n"
                   "Prints what a vtrain checkpoint holds and checks that it loads.\n");
            return 0;
        } else if (!path && argv[i][0] != '-')
            path = argv[i];
        else {
            fprintf(stderr, "vinfo: unexpected argument '%s' (usage: vinfo CKPT [--params])\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: vinfo CKPT [--params]\n");
        return 2;
    }
    vt_tool_model tm;
    char err[1024];
    int rc = vt_tool_model_open(&tm, path, NULL, NULL, 0, err, sizeof err);
    if (rc) {
        fprintf(stderr, "vinfo: %s\n", err);
        return rc;
    }
    const vt_ckpt_info *in = &tm.info;
    printf("%s: vtrain checkpoint format %d, model '%s'\n", path, in->format, in->model_name);
    printf("position: epoch %lld, step %lld, %lld clips seen", (long long)in->pos.epoch,
           (long long)in->pos.step, (long long)in->pos.samples);
    if (!isnan(in->pos.best_metric))
        printf(", best validation accuracy %.2f%% at epoch %lld", 100 * in->pos.best_metric,
               (long long)in->pos.best_epoch);
    printf("\noptimizer: %s", in->optim_type ? in->optim_type : "none");
    if (in->optim_type)
        printf(" (step %lld)", (long long)in->optim_step);
    printf("\nclasses: %d", in->n_classes);
    for (int k = 0; k < in->n_classes && k < 12; k++)
        printf("%s%s", k ? ", " : " (", in->classes[k]);
    printf("%s\n", in->n_classes > 12 ? ", ...)" : in->n_classes ? ")" : "");
    printf("tensors: %d, %zu parameters; every tensor loaded\n", in->n_params,
           vt_model_param_count(&tm.run.model));
    if (params)
        vt_model_print(&tm.run.model, stdout);
    vt_tool_model_close(&tm);
    return 0;
}
