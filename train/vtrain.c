/* vtrain - train a model described by an INI config.
 *
 *   vtrain CONFIG [--resume CKPT] [--set SECTION.KEY=VALUE ...] [--dry-run]
 *                 [--stop-after N] [--quiet]
 *
 * Exit status: 0 done, 2 config or usage error, 1 runtime failure,
 * 130 / 143 stopped by SIGINT / SIGTERM (a checkpoint was written).
 *
 * Under an MPI launcher (mpirun -np N vtrain CONFIG ...) the N processes
 * train one model together (docs/distributed.md); rank 0 prints. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vt_dist.h"
#include "vt_run.h"

static volatile sig_atomic_t last_signal;

static void on_signal(int sig)
{
    last_signal = sig;
    vt_train_stop_requested = 1;
    vt_dist_signal_note(sig);
    /* A second signal ends the process at once. */
    signal(sig, SIG_DFL);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vtrain CONFIG [options]\n"
            "  --resume CKPT        continue the run saved in CKPT (e.g. runs/x/last.h5)\n"
            "  --set SEC.KEY=VALUE  override a config key (repeatable), e.g. --set train.lr=0.1\n"
            "  --dry-run            build the model, print its layer table and exit\n"
            "  --stop-after N       stop after N steps of this invocation, with a checkpoint\n"
            "  --quiet              no progress output\n"
            "  --help-config        print the reference of every config section and key\n"
            "See docs/config.md for the config language. Data-parallel training on N\n"
            "processes or machines: mpirun -np N vtrain CONFIG ... (docs/distributed.md).\n");
}

static int dry_run(const char *path, const char *const *sets, int n_sets)
{
    vt_run r;
    char err[1024];
    if (vt_run_load(&r, path, NULL, sets, n_sets, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        vt_run_free(&r);
        return 2;
    }
    /* Without data the epoch length is unknown: a nominal total lets the
     * schedule be checked. */
    int64_t total = r.train.steps > 0 ? r.train.steps : (int64_t)r.train.epochs * 1000000;
    if (vt_run_finish(&r, total, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        vt_run_free(&r);
        return 2;
    }
    vt_model_print(&r.model, stdout);
    vt_run_free(&r);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *resume = NULL;
    const char **sets = calloc((size_t)argc, sizeof *sets);
    int n_sets = 0, dry = 0, quiet = 0;
    long long stop_after = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            free(sets);
            return 0;
        } else if (!strcmp(a, "--help-config")) {
            vt_run_print_reference(stdout);
            free(sets);
            return 0;
        } else if (!strcmp(a, "--dry-run")) {
            dry = 1;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--resume") || !strcmp(a, "--set") || !strcmp(a, "--stop-after")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vtrain: %s needs a value\n", a);
                free(sets);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--resume"))
                resume = v;
            else if (!strcmp(a, "--set"))
                sets[n_sets++] = v;
            else {
                char *end;
                stop_after = strtoll(v, &end, 10);
                if (*end || stop_after <= 0) {
                    fprintf(stderr, "vtrain: --stop-after needs a positive step count, got '%s'\n", v);
                    free(sets);
                    return 2;
                }
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "vtrain: unknown option '%s'\n", a);
            usage(stderr);
            free(sets);
            return 2;
        } else if (!config) {
            config = a;
        } else {
            fprintf(stderr, "vtrain: one config only (got '%s' and '%s')\n", config, a);
            free(sets);
            return 2;
        }
    }
    if (!config) {
        usage(stderr);
        free(sets);
        return 2;
    }
    if (dry) {
        int rc = dry_run(config, sets, n_sets);
        free(sets);
        return rc;
    }
    char err[1024];
    if (vt_dist_init("vtrain", err, sizeof err)) {
        fprintf(stderr, "vtrain: %s\n", err);
        free(sets);
        return 1;
    }
    /* Under mpirun, a Ctrl-C reaches every rank as SIGTERM; a signal at any
     * one rank stops all of them after the same step. */
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    vt_train_opts o = {config, sets, n_sets, resume, stop_after, quiet};
    int rc = vt_train_run(&o, err, sizeof err);
    free(sets);
    /* Every rank ends with the same status and message: rank 0 says it. */
    int lead = vt_dist_rank() == 0, status;
    switch (rc) {
    case VT_TRAIN_DONE:
        status = 0;
        break;
    case VT_TRAIN_INTERRUPTED:
        status = last_signal ? 128 + last_signal : 0;
        break;
    case VT_TRAIN_CONFIG_ERROR:
        if (lead)
            fprintf(stderr, "%s\n", err);
        status = 2;
        break;
    default:
        if (lead)
            fprintf(stderr, "vtrain: %s\n", err);
        status = 1;
    }
    vt_dist_finalize();
    return status;
}
