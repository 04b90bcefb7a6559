/* Peak fp32 arithmetic rate of this CPU's AVX2 FMA units: the bound no fp32 kernel can beat.
 *
 * Each thread runs 12 independent chains of 8-wide fused multiply-adds on registers only (no memory
 * traffic), enough chains to hide the FMA latency on two FMA pipes. Built and run by
 * benchmarks/flops.py --peak:
 *     gcc -O3 -mavx2 -mfma -fopenmp benchmarks/fma_peak.c -o fma_peak && OMP_NUM_THREADS=2 ./fma_peak
 * Prints one line: "<threads> <best GFLOP/s of 5 runs>".
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define CHAINS 12

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 100000000L;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        float sink = 0;
        double t0 = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
        {
            __m256 acc[CHAINS];
            const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
            for (int k = 0; k < CHAINS; k++) acc[k] = _mm256_set1_ps((float)k);
            for (long i = 0; i < iters; i++) {
                for (int k = 0; k < CHAINS; k++) acc[k] = _mm256_fmadd_ps(acc[k], m, c);
            }
            /* Use the results, so the compiler cannot drop the loop. */
            __m256 s = acc[0];
            for (int k = 1; k < CHAINS; k++) s = _mm256_add_ps(s, acc[k]);
            float out[8];
            _mm256_storeu_ps(out, s);
            sink += out[0];
        }
        double seconds = omp_get_wtime() - t0;
        double gflops = 2.0 * 8 * CHAINS * (double)iters * omp_get_max_threads() / seconds / 1e9;
        if (gflops > best) best = gflops;
        if (sink == -1.0f) printf("unreachable\n");
    }
    printf("%d %.1f\n", omp_get_max_threads(), best);
    return 0;
}
