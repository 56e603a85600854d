// OpenBLAS's CBLAS interface (Debian: libopenblas-dev, pkg-config `openblas`).
#include <cblas.h>
// openblas_set_num_threads is declared in OpenBLAS's cblas.h; re-declared here in case another cblas.h wins.
void openblas_set_num_threads(int num_threads);
// The name of the kernel family OpenBLAS picked at load (e.g. "Haswell", "Prescott").
char *openblas_get_corename(void);

// The CPU's vector features that decide which OpenBLAS kernel it can run, as a bit set (bits
// are set only when the OS saves the registers too, per XCR0):
//   1 AVX, 2 AVX2, 4 FMA, 8 AVX512F, 16 AVX512BW, 32 AVX512DQ, 64 AVX512VL, 128 AVX512CD, 256 AVX512_BF16,
//   512 the rest of the Haswell set the compiler may use with AVX2 (BMI1, BMI2, F16C, LZCNT, MOVBE).
// 0 on other architectures.
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
static inline unsigned int resnet_cpu_features(void) {
    unsigned int a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!((c >> 27) & 1)) return 0;   // no OSXSAVE: the OS does not save AVX state
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    unsigned long long xcr0 = ((unsigned long long)hi << 32) | lo;
    int ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xe6) == 0xe6;
    if (ymm && ((c >> 28) & 1)) f |= 1;
    if (ymm && ((c >> 12) & 1)) f |= 4;
    int f16c = (c >> 29) & 1, movbe = (c >> 22) & 1, lzcnt = 0;
    if (__get_cpuid(0x80000001, &a, &b, &c, &d)) lzcnt = (c >> 5) & 1;
    if (__get_cpuid_max(0, 0) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (ymm && ((b >> 5) & 1)) f |= 2;
        if (f16c && movbe && lzcnt && ((b >> 3) & 1) && ((b >> 8) & 1)) f |= 512;
        if (zmm) {
            if ((b >> 16) & 1) f |= 8;
            if ((b >> 30) & 1) f |= 16;
            if ((b >> 17) & 1) f |= 32;
            if ((b >> 31) & 1) f |= 64;
            if ((b >> 28) & 1) f |= 128;
            __cpuid_count(7, 1, a, b, c, d);
            if ((a >> 5) & 1) f |= 256;
        }
    }
    return f;
}
#else
static inline unsigned int resnet_cpu_features(void) { return 0; }
#endif
// "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64"
char *openblas_get_config(void);
