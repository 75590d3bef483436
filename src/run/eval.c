/* eval.c - test-split accuracy: every view (K clips x crops) of every
 * video, class probabilities averaged per video.
 *
 * Distributed (a loader with n_shards > 1, one per rank): each rank scores
 * the views of its block of videos; the per-video probability sums, view
 * counts and clip counts are then summed over ranks, so every rank ends
 * with the numbers one process would report (a video's sum comes whole
 * from the one rank that holds it). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vt_dist.h"
#include "vt_run.h"

/* Rank of `label` among probs[0..k): 0 when it has the highest. Ties count
 * against the label so a constant output never scores. */
static int rank_of(const double *p, int k, int label)
{
    int r = 0;
    for (int i = 0; i < k; i++)
        if (i != label && p[i] >= p[label])
            r++;
    return r;
}

static int argmax(const double *p, int k)
{
    int b = 0;
    for (int i = 1; i < k; i++)
        if (p[i] > p[b])
            b = i;
    return b;
}

int vt_evaluate(vt_model *m, vt_loader *l, vt_eval_result *res,
                void (*progress)(void *ud, long done, long total), void *ud, char *err,
                size_t errlen)
{
    memset(res, 0, sizeof *res);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int K = m->classes, nv = vt_loader_num_videos(l);
    if (vt_loader_num_classes(l) != K) {
        snprintf(err, errlen, "the dataset has %d classes but the model outputs %d",
                 vt_loader_num_classes(l), K);
        return -1;
    }
    double *sum = calloc((size_t)nv * K, sizeof *sum);
    long *views = calloc((size_t)nv, sizeof *views);
    float *probs = NULL;
    double *pd = malloc((size_t)K * sizeof *pd);
    int cap = 0, rc = 0, top5 = K < 5 ? K : 5;
    long done = 0, hit1 = 0, hit5 = 0;
    double nll = 0;
    vt_ctx c;
    vt_ctx_init(&c, 0);
    c.training = 0;
    c.grad_enabled = 0;
    const vt_batch *b;
    int first = 1;
    for (;;) {
        int got = vt_loader_next(l, &b, err, errlen);
        if (got < 0) {
            rc = -1;
            break;
        }
        if (got == 0) {
            if (first)
                continue; /* a loader left at an epoch's end: start the next */
            break;
        }
        first = 0;
        if (b->n == 0)
            continue;
        if (b->n > cap) {
            cap = b->n;
            probs = realloc(probs, (size_t)cap * K * sizeof *probs);
        }
        vt_ctx_reset(&c);
        vt_tensor *x = vt_tensor_wrap(&c, b->x, 5, (int[]){b->n, 3, b->t, b->h, b->w});
        vt_tensor *y = vt_model_forward(m, &c, x);
        vt_model_probs(m, y, probs);
        for (int i = 0; i < b->n; i++) {
            const float *p = probs + (size_t)i * K;
            for (int k = 0; k < K; k++) {
                pd[k] = p[k];
                sum[(size_t)b->video[i] * K + k] += p[k];
            }
            int r = rank_of(pd, K, b->label[i]);
            hit1 += r == 0;
            hit5 += r < top5;
            nll -= log(fmax(pd[b->label[i]], 1e-30));
            views[b->video[i]]++;
        }
        done += b->n;
        if (progress)
            progress(ud, b->index + 1, vt_loader_batches_per_epoch(l));
    }
    vt_ctx_free(&c);
    if (vt_loader_num_shards(l) > 1) {
        /* A rank whose data failed must not leave the others waiting. */
        if (vt_dist_agree(rc ? 1 : 0, err, errlen))
            rc = -1;
        if (rc == 0) {
            double sc[2] = {nll, 0};
            long cnt[3] = {done, hit1, hit5};
            vt_dist_sum_double(sum, (size_t)nv * K);
            vt_dist_sum_long(views, (size_t)nv);
            vt_dist_sum_double(sc, 2);
            vt_dist_sum_long(cnt, 3);
            nll = sc[0];
            done = cnt[0];
            hit1 = cnt[1];
            hit5 = cnt[2];
        }
    }
    if (rc == 0) {
        res->n_classes = K;
        res->clips = done;
        res->clip_top1 = done ? (double)hit1 / done : 0;
        res->clip_top5 = done ? (double)hit5 / done : 0;
        res->loss = done ? nll / done : 0;
        res->class_acc = calloc((size_t)K, sizeof *res->class_acc);
        res->confusion = calloc((size_t)K * K, sizeof *res->confusion);
        res->video_pred = malloc((size_t)nv * sizeof *res->video_pred);
        long *per_class = calloc((size_t)K, sizeof *per_class);
        long *per_hit = calloc((size_t)K, sizeof *per_hit);
        long v1 = 0, v5 = 0;
        for (int v = 0; v < nv; v++) {
            res->video_pred[v] = -1;
            if (!views[v])
                continue; /* broken video: reported by the loader */
            const double *p = sum + (size_t)v * K;
            int lab = vt_loader_video_label(l, v), pred = argmax(p, K), r = rank_of(p, K, lab);
            res->video_pred[v] = pred;
            res->videos++;
            v1 += r == 0;
            v5 += r < top5;
            per_class[lab]++;
            per_hit[lab] += r == 0;
            res->confusion[(size_t)lab * K + pred]++;
        }
        res->video_top1 = res->videos ? (double)v1 / res->videos : 0;
        res->video_top5 = res->videos ? (double)v5 / res->videos : 0;
        double acc = 0;
        int present = 0;
        for (int k = 0; k < K; k++) {
            res->class_acc[k] = per_class[k] ? (double)per_hit[k] / per_class[k] : NAN;
            if (per_class[k]) {
                acc += res->class_acc[k];
                present++;
            }
        }
        res->mean_class_acc = present ? acc / present : 0;
        free(per_class);
        free(per_hit);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    res->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    free(sum);
    free(views);
    free(probs);
    free(pd);
    return rc;
}

void vt_eval_result_free(vt_eval_result *r)
{
    free(r->class_acc);
    free(r->confusion);
    free(r->video_pred);
    memset(r, 0, sizeof *r);
}
