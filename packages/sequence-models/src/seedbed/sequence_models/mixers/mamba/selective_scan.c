/* Mamba-1 selective scan, fused CPU kernel (forward and backward).
 *
 *   h_t = exp(delta_t A) * h_{t-1} + delta_t u_t B_t,      y_t = C_t . h_t
 *
 * Per (batch b, channel e), the N-wide state lives in registers/L1 while the kernel walks
 * the sequence once, so every (token, channel, state) costs one exp and a few multiply-adds
 * with no intermediate tensor written to memory. The sequence is walked chunk by chunk: the
 * state entering each chunk is saved (checkpoints), and the backward pass recomputes one
 * chunk's states from its checkpoint, then runs the chunk in reverse.
 *
 * Built by seedbed.sequence_models.mixers._native at first use, once per element type:
 *   -DSCAN_DOUBLE=0 (float) or -DSCAN_DOUBLE=1 (double).
 * Layout (all C-contiguous): u, delta, y, du, ddelta (B, L, E); B, C, dB, dC (B, L, N);
 * A, dA (E, N); states (B, E, N); checkpoints (B, ceil(L / chunk), E, N).
 * Only channels [e0, e1) are processed, so callers may split channels across threads;
 * dA, dB, dC are accumulated into (callers zero them), everything else is overwritten.
 */
#include <math.h>
#include <string.h>

/* While a kernel runs, the x86 FPU flushes subnormal results to zero and reads subnormal
 * inputs as zero (FTZ and DAZ bits of MXCSR, this thread only; restored on return).
 * Products of small gradients, states and decays land in the subnormal range, which x86
 * processes through slow microcode; they are below 1.2e-38 (float) and change nothing that
 * fp32 resolves. Measured (a training step, L = 4096, E = 128, N = 16, one thread): with
 * exponents down to -1000, 55 ms without this (with the floor below) and 155 ms with
 * neither; 24 ms with both, as at ordinary exponents. */
#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#define FLUSH_SUBNORMALS unsigned int saved_csr_ = _mm_getcsr(); _mm_setcsr(saved_csr_ | 0x8040u)
#define RESTORE_SUBNORMALS _mm_setcsr(saved_csr_)
#else
#define FLUSH_SUBNORMALS do {} while (0)
#define RESTORE_SUBNORMALS do {} while (0)
#endif

/* Decay exponents are floored at log(sqrt(smallest normal)): a decay of 1.1e-19 (float) or
 * 1.5e-154 (double) in place of a smaller one changes a state by that fraction of its
 * previous value, and keeps every product of a decay and a value of ordinary size a normal
 * number (see the flush above for what subnormal operands cost on x86). */
#if SCAN_DOUBLE
typedef double real;
static inline double EXP(double x) { return exp(x < -354.0 ? -354.0 : x); }
#else
typedef float real;

/* exp for float: exp(x) = 2^k exp(r), r = x - k ln2 in [-ln2/2, ln2/2], with a degree-7
 * Taylor polynomial for exp(r) (truncation error < 6e-9 relative). Written without calls
 * or branches so the compiler vectorises the loops that use it. The input is clamped to
 * [-43.6, 88] (the floor above), and the scale 2^k is applied in two halves. */
static inline float EXP(float x) {
    x = x < -43.6f ? -43.6f : (x > 88.0f ? 88.0f : x);
    float k = __builtin_roundf(x * 1.44269504088896341f);
    float r = x - k * 0.693145751953125f;       /* ln2, high part (exact in float) */
    r = r - k * 1.428606765330187045e-06f;      /* ln2, low part */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int ki = (int)k, k1 = ki / 2, k2 = ki - k1;
    union { float f; int i; } s1, s2;
    s1.i = (k1 + 127) << 23;
    s2.i = (k2 + 127) << 23;
    return p * s1.f * s2.f;
}
#endif

/* Forward. h0 may be NULL (zero state); checkpoints may be NULL (not saved). */
void scan_forward(const real *u, const real *delta, const real *A, const real *B,
                  const real *C, const real *h0, real *y, real *h_last, real *checkpoints,
                  long bsz, long L, long E, long N, long chunk, long e0, long e1) {
    FLUSH_SUBNORMALS;
    long n_chunks = (L + chunk - 1) / chunk;
    for (long b = 0; b < bsz; b++) {
        real *h = h_last + b * E * N;
        for (long e = e0; e < e1; e++)
            for (long n = 0; n < N; n++) h[e * N + n] = h0 ? h0[(b * E + e) * N + n] : 0;
        for (long t = 0; t < L; t++) {
            if (checkpoints && t % chunk == 0) {
                real *ck = checkpoints + (b * n_chunks + t / chunk) * E * N;
                memcpy(ck + e0 * N, h + e0 * N, sizeof(real) * (e1 - e0) * N);
            }
            const real *ut = u + (b * L + t) * E, *dt = delta + (b * L + t) * E;
            const real *Bt = B + (b * L + t) * N, *Ct = C + (b * L + t) * N;
            real *yt = y + (b * L + t) * E;
            for (long e = e0; e < e1; e++) {
                real de = dt[e], dx = de * ut[e], acc = 0;
                real *he = h + e * N;
                const real *Ae = A + e * N;
                for (long n = 0; n < N; n++) {
                    real hn = EXP(de * Ae[n]) * he[n] + dx * Bt[n];
                    he[n] = hn;
                    acc += Ct[n] * hn;
                }
                yt[e] = acc;
            }
        }
    }
    RESTORE_SUBNORMALS;
}

/* One (token, channel) of the reverse pass, over the N states. In: the step's delta, its
 * delta * u, the output gradient gy, and the states before (prev) and after (cur) the
 * step. dh holds dL/dh_t from later tokens and leaves as dL/dh_{t-1}; dA, dB, dC are added
 * into; g_log = sum_n dL/d(delta A_n) A_n and g_dx = dL/d(delta u) are returned. The
 * pointers never alias (restrict lets the compiler vectorise without run-time checks). */
static inline void backward_step(long N, real de, real dx, real gy, const real *restrict A,
                                 const real *restrict B, const real *restrict C,
                                 const real *restrict prev, const real *restrict cur,
                                 real *restrict dh, real *restrict dA, real *restrict dB,
                                 real *restrict dC, real *g_log, real *g_dx) {
    real s_log = 0, s_dx = 0;
    for (long n = 0; n < N; n++) {
        real a = EXP(de * A[n]);
        real g = dh[n] + gy * C[n];   /* dL/dh_t */
        real ga = g * prev[n] * a;    /* dL/d(delta A_n) */
        dC[n] += gy * cur[n];
        dB[n] += g * dx;
        dA[n] += ga * de;
        s_log += ga * A[n];
        s_dx += g * B[n];
        dh[n] = g * a;                /* dL/dh_{t-1} */
    }
    *g_log = s_log;
    *g_dx = s_dx;
}

/* Backward. dh_last may be NULL (no gradient on the final state). work holds one chunk of
 * states: (chunk, E, N). Writes du, ddelta, dh0 (for channels [e0, e1)); adds into dA, dB,
 * dC. */
void scan_backward(const real *u, const real *delta, const real *A, const real *B,
                   const real *C, const real *checkpoints, const real *dy,
                   const real *dh_last, real *du, real *ddelta, real *dA, real *dB, real *dC,
                   real *dh0, real *work, long bsz, long L, long E, long N, long chunk,
                   long e0, long e1) {
    FLUSH_SUBNORMALS;
    long n_chunks = (L + chunk - 1) / chunk;
    for (long b = 0; b < bsz; b++) {
        real *dh = dh0 + b * E * N; /* running gradient w.r.t. the state, ends as dh0 */
        for (long e = e0; e < e1; e++)
            for (long n = 0; n < N; n++)
                dh[e * N + n] = dh_last ? dh_last[(b * E + e) * N + n] : 0;
        for (long j = n_chunks - 1; j >= 0; j--) {
            long t0 = j * chunk, t1 = t0 + chunk < L ? t0 + chunk : L;
            const real *start = checkpoints + (b * n_chunks + j) * E * N;
            /* 1. recompute this chunk's states h_t, t in [t0, t1) */
            for (long t = t0; t < t1; t++) {
                const real *prev = t == t0 ? start : work + (t - t0 - 1) * E * N;
                real *cur = work + (t - t0) * E * N;
                const real *ut = u + (b * L + t) * E, *dt = delta + (b * L + t) * E;
                const real *Bt = B + (b * L + t) * N;
                for (long e = e0; e < e1; e++) {
                    real de = dt[e], dx = de * ut[e];
                    const real *Ae = A + e * N;
                    for (long n = 0; n < N; n++)
                        cur[e * N + n] = EXP(de * Ae[n]) * prev[e * N + n] + dx * Bt[n];
                }
            }
            /* 2. run the chunk in reverse */
            for (long t = t1 - 1; t >= t0; t--) {
                const real *prev = t == t0 ? start : work + (t - t0 - 1) * E * N;
                const real *cur = work + (t - t0) * E * N;
                const real *ut = u + (b * L + t) * E, *dt = delta + (b * L + t) * E;
                const real *Bt = B + (b * L + t) * N, *Ct = C + (b * L + t) * N;
                const real *dyt = dy + (b * L + t) * E;
                real *dBt = dB + (b * L + t) * N, *dCt = dC + (b * L + t) * N;
                for (long e = e0; e < e1; e++) {
                    real de = dt[e], ue = ut[e], g_log, g_dx;
                    backward_step(N, de, de * ue, dyt[e], A + e * N, Bt, Ct, prev + e * N,
                                  cur + e * N, dh + e * N, dA + e * N, dBt, dCt, &g_log, &g_dx);
                    du[(b * L + t) * E + e] = g_dx * de;
                    ddelta[(b * L + t) * E + e] = g_log + g_dx * ue;
                }
            }
        }
    }
    RESTORE_SUBNORMALS;
}
