/* Row-wise top-k of a [rows, n] float32 or bfloat16 matrix, unsorted: saekit's TopK selection.
 *
 * torch.topk on the CPU copies every row into (value, index) pairs and heap-sorts them, which reads and
 * writes ~3x the matrix; for the [batch, d_sae] pre-activations of a TopK step it is a quarter of the
 * step. Here each row is scanned once in blocks: a block is only looked at element by element when one
 * of its values beats the current k-th best (a vectorisable compare), and candidates go to a small
 * buffer that is cut back to the best k (nth_element-style quickselect) when it fills. The first
 * `cap` elements are taken unconditionally, so rows of -inf still give k results.
 *
 * Ranking is torch.topk's: NaN counts as larger than every number. Ties are broken by position
 * (an element equal to the current k-th best is not taken), so results are deterministic.
 * Rows are split over `threads` POSIX threads.
 */
#include <math.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct { float key; int32_t idx; } cand_t;

static inline float bf16_to_f32(uint16_t b) {
    uint32_t u = ((uint32_t)b) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float rank_key(float v) { return v != v ? INFINITY : v; }

/* move the k largest keys of buf[0..m) to buf[0..k) (any order); returns the smallest of them */
static float select_k(cand_t *buf, int64_t m, int64_t k) {
    int64_t lo = 0, hi = m - 1, want = k - 1;
    while (lo < hi) {
        float pivot = buf[lo + (hi - lo) / 2].key;
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (buf[i].key > pivot) i++;
            while (buf[j].key < pivot) j--;
            if (i <= j) { cand_t t = buf[i]; buf[i] = buf[j]; buf[j] = t; i++; j--; }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
    float kth = buf[0].key;
    for (int64_t t = 1; t < k; t++) if (buf[t].key < kth) kth = buf[t].key;
    return kth;
}

#define BLOCK 16

/* bit j set when element j of the 16 at p is not below thr (NaN included) */
static inline uint32_t mask16_f32(const float *p, float thr) {
#if defined(__AVX512F__)
    return (uint32_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(p), _mm512_set1_ps(thr), _CMP_NLT_UQ);
#elif defined(__AVX2__)
    __m256 t = _mm256_set1_ps(thr);
    uint32_t lo = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p), t, _CMP_NLT_UQ));
    uint32_t hi = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p + 8), t, _CMP_NLT_UQ));
    return lo | hi << 8;
#else
    uint32_t m = 0;
    for (int j = 0; j < 16; j++) m |= (uint32_t)!(p[j] < thr) << j;
    return m;
#endif
}

static inline uint32_t mask16_bf16(const uint16_t *p, float thr) {
#if defined(__AVX512F__)
    __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16);
    return (uint32_t)_mm512_cmp_ps_mask(_mm512_castsi512_ps(w), _mm512_set1_ps(thr), _CMP_NLT_UQ);
#elif defined(__AVX2__)
    __m256 t = _mm256_set1_ps(thr);
    __m256i a = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16);
    __m256i b = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 8))), 16);
    uint32_t lo = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_castsi256_ps(a), t, _CMP_NLT_UQ));
    uint32_t hi = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_castsi256_ps(b), t, _CMP_NLT_UQ));
    return lo | hi << 8;
#else
    uint32_t m = 0;
    for (int j = 0; j < 16; j++) m |= (uint32_t)!(bf16_to_f32(p[j]) < thr) << j;
    return m;
#endif
}

/* The k-th largest of the ng >= k group maxima, found without ranking all of them: the smallest of the
 * maxima of k slices of `gmax` is a lower bound on it (k distinct values), so only the maxima at or
 * above that bound (usually a few times k) are ranked. */
static float group_threshold(const float *gmax, int64_t ng, int64_t k, cand_t *buf) {
    float lo = INFINITY;
    for (int64_t s = 0; s < k; s++) {
        int64_t a = ng * s / k, b = ng * (s + 1) / k;
        float mx = -INFINITY;
        for (int64_t c = a; c < b; c++) mx = gmax[c] > mx ? gmax[c] : mx;
        lo = mx < lo ? mx : lo;
    }
    int64_t m = 0;
    for (int64_t c = 0; c < ng; c++) { /* branch-free: write always, keep when at or above lo */
        buf[m].key = gmax[c];
        m += gmax[c] >= lo;
    }
    return select_k(buf, m, k);
}

/* Pass 1 puts element i in group i % ng (ng ~ n / 32) and takes each group's largest key: the k-th largest of those
 * ng maxima is a lower bound on the row's k-th largest (they are k distinct elements), and a tight one.
 * Pass 2 (the row is in cache by then) keeps only elements at or above it, so few reach the buffer. */
#define DEFINE_ROW(NAME, T, LOAD, MASK16)                                                                \
static void NAME(const T *row, int64_t n, int64_t k, cand_t *buf, int64_t cap, float *gmax,        \
                 int64_t ng, int32_t *out) {                                                       \
    for (int64_t c = 0; c < ng; c++) gmax[c] = -INFINITY;                                          \
    for (int64_t base = 0; base < n; base += ng) {                                                 \
        int64_t len = n - base < ng ? n - base : ng;                                               \
        const T *p = row + base;                                                                   \
        for (int64_t c = 0; c < len; c++) {                                                        \
            float v = rank_key(LOAD(p[c]));                                                        \
            gmax[c] = v > gmax[c] ? v : gmax[c];                                                   \
        }                                                                                          \
    }                                                                                              \
    float thr = group_threshold(gmax, ng, k, buf);                                                 \
    int strict = 0; /* before the first cut: keep keys >= thr; after it: only keys > the k-th */   \
    int64_t m = 0;                                                                                 \
    for (int64_t i = 0; i < n; i += BLOCK) {                                                       \
        int64_t end = i + BLOCK <= n ? i + BLOCK : n;                                              \
        uint32_t mask = 0;                                                                         \
        if (end - i == BLOCK) mask = MASK16(row + i, thr);                                         \
        else for (int64_t j = i; j < end; j++) mask |= (uint32_t)!(LOAD(row[j]) < thr) << (j - i); \
        while (mask) {                                                                             \
            int64_t j = i + __builtin_ctz(mask);                                                   \
            mask &= mask - 1;                                                                      \
            float v = rank_key(LOAD(row[j]));                                                      \
            if (strict ? v > thr : v >= thr) {                                                     \
                buf[m].key = v; buf[m].idx = (int32_t)j; m++;                                      \
                if (m == cap) { thr = select_k(buf, m, k); m = k; strict = 1; }                    \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    if (m > k) select_k(buf, m, k);                                                                \
    for (int64_t t = 0; t < k; t++) out[t] = buf[t].idx;                                           \
}

#define LOAD_F32(x) (x)
#define LOAD_BF16(x) bf16_to_f32(x)
DEFINE_ROW(row_f32, float, LOAD_F32, mask16_f32)
DEFINE_ROW(row_bf16, uint16_t, LOAD_BF16, mask16_bf16)

typedef struct {
    const void *x; int64_t row_stride, n, k, lo, hi; int bf16; int64_t *out_idx; void *out_val;
    int status;
} job_t;

static void *run_job(void *arg) {
    job_t *jb = (job_t *)arg;
    int64_t ng = jb->n / 32 > jb->k ? jb->n / 32 : jb->k; /* groups: >= k, ~32 elements each */
    int64_t cap = 4 * jb->k > jb->k + 64 ? 4 * jb->k : jb->k + 64;
    if (cap < ng) cap = ng; /* the buffer also ranks the ng group maxima */
    cand_t *buf = (cand_t *)malloc(sizeof(cand_t) * (size_t)cap);
    int32_t *idx = (int32_t *)malloc(sizeof(int32_t) * (size_t)jb->k);
    float *gmax = (float *)malloc(sizeof(float) * (size_t)ng);
    if (!buf || !idx || !gmax) { free(buf); free(idx); free(gmax); jb->status = 1; return NULL; }
    for (int64_t r = jb->lo; r < jb->hi; r++) {
        int64_t *oi = jb->out_idx + r * jb->k;
        if (jb->bf16) {
            const uint16_t *row = (const uint16_t *)jb->x + r * jb->row_stride;
            uint16_t *ov = (uint16_t *)jb->out_val + r * jb->k;
            row_bf16(row, jb->n, jb->k, buf, cap, gmax, ng, idx);
            for (int64_t t = 0; t < jb->k; t++) { oi[t] = idx[t]; ov[t] = row[idx[t]]; }
        } else {
            const float *row = (const float *)jb->x + r * jb->row_stride;
            float *ov = (float *)jb->out_val + r * jb->k;
            row_f32(row, jb->n, jb->k, buf, cap, gmax, ng, idx);
            for (int64_t t = 0; t < jb->k; t++) { oi[t] = idx[t]; ov[t] = row[idx[t]]; }
        }
    }
    free(buf); free(idx); free(gmax);
    jb->status = 0;
    return NULL;
}

/* returns 0 on success; x is [rows, n] with row stride `row_stride` elements; 1 <= k <= n < 2^31 */
int saekit_topk_rows(const void *x, int64_t rows, int64_t row_stride, int64_t n, int64_t k, int bf16,
                     void *out_val, int64_t *out_idx, int threads) {
    if (k < 1 || k > n || n >= 2147483647LL) return 2;
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (rows < threads) threads = rows > 0 ? (int)rows : 1;
    job_t jobs[64];
    pthread_t tids[64];
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job_t){x, row_stride, n, k, rows * t / threads, rows * (t + 1) / threads, bf16,
                          out_idx, out_val, 1};
    }
    int started[64] = {0};
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&tids[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    int status = jobs[0].status;
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(tids[t], NULL);
        else run_job(&jobs[t]);
        status |= jobs[t].status;
    }
    return status;
}
