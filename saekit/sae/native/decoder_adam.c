/* The decoder's whole optimiser step in one pass over its rows.
 *
 * A training step with a unit-norm decoder does three things to W_dec [rows, n]: remove the gradient's
 * component along each row (so the step does not change the row's norm to first order), take an Adam step
 * on the row and its two moments, and scale the row back to unit norm. Done as three library calls they
 * stream the 21 MB decoder, its gradient and moments through memory about three times; here each row
 * (n floats: 2.3 KB at n = 576) is read once, stays in L1 while all three happen, and is written once.
 *
 * The arithmetic is torch's (fp32):
 *   p  = g . w                                   (rows are unit: the trainer renormalises every step)
 *   g' = g - p w
 *   m  = m + (1 - beta1) (g' - m)                (torch's lerp for a weight below 0.5)
 *   v  = beta2 v + (1 - beta2) g'^2
 *   w  = w - step_size m / (sqrt(v) / bc2_sqrt + eps),   step_size = lr / (1 - beta1^t)
 *   w  = w / max(|w|, 1e-12)
 * Sums use 16 partial accumulators, so they vectorise; they differ from torch's in rounding only.
 * Rows are split over `threads` POSIX threads. The gradient is read, never written.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#define LANES 16

typedef struct {
    float *w, *m, *v;
    const float *g;
    int64_t n, r0, r1;
    float step_size, beta1, beta2, eps, bc2_sqrt;
    int project, renorm;
} job_t;

static float row_dot(const float *a, const float *b, int64_t n) {
    float acc[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += a[j + l] * b[j + l];
    float s = 0.0f;
    for (; j < n; j++) s += a[j] * b[j];
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

/* Adam on element i of one row (after the projection); returns the updated weight. */
static inline float adam_elem(const job_t *jb, const float *g, float *m, float *v, float *w, int64_t i,
                              float p) {
    const float gi = g[i] - p * w[i];
    const float mi = m[i] + (1.0f - jb->beta1) * (gi - m[i]);
    const float vi = jb->beta2 * v[i] + (1.0f - jb->beta2) * gi * gi;
    const float wi = w[i] - jb->step_size * mi / (sqrtf(vi) / jb->bc2_sqrt + jb->eps);
    m[i] = mi;
    v[i] = vi;
    w[i] = wi;
    return wi;
}

static void *run_job(void *arg) {
    const job_t *jb = (const job_t *)arg;
    const int64_t n = jb->n;
    for (int64_t r = jb->r0; r < jb->r1; r++) {
        float *w = jb->w + r * n, *m = jb->m + r * n, *v = jb->v + r * n;
        const float *g = jb->g + r * n;
        const float p = jb->project ? row_dot(g, w, n) : 0.0f;
        float acc[LANES] = {0};
        int64_t j = 0;
        for (; j + LANES <= n; j += LANES) {
            for (int l = 0; l < LANES; l++) {
                const float wi = adam_elem(jb, g, m, v, w, j + l, p);
                acc[l] += wi * wi;
            }
        }
        float sq = 0.0f;
        for (; j < n; j++) {
            const float wi = adam_elem(jb, g, m, v, w, j, p);
            sq += wi * wi;
        }
        if (!jb->renorm) continue;
        for (int l = 0; l < LANES; l++) sq += acc[l];
        float norm = sqrtf(sq);
        if (norm < 1e-12f) norm = 1e-12f;
        for (int64_t i = 0; i < n; i++) w[i] = w[i] / norm;
    }
    return NULL;
}

int saekit_decoder_adam_rows(float *w, const float *g, float *m, float *v, int64_t rows, int64_t n,
                             float step_size, float beta1, float beta2, float eps, float bc2_sqrt,
                             int project, int renorm, int threads) {
    if (rows < 0 || n <= 0) return 1;
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (rows < threads) threads = rows > 0 ? (int)rows : 1;
    job_t jobs[64];
    pthread_t tids[64];
    int started[64] = {0};
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job_t){w, m, v, g, n, rows * t / threads, rows * (t + 1) / threads,
                          step_size, beta1, beta2, eps, bc2_sqrt, project, renorm};
    }
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&tids[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(tids[t], NULL);
        else run_job(&jobs[t]);
    }
    return 0;
}
