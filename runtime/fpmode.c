/*
 * fpmode.c — subnormals flushed to zero inside generated code (fpmode.h).
 */
#include "fpmode.h"

#include "env_switch.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>

enum {
    FLUSH_BITS = 0x8000 /* FTZ */ | 0x0040 /* DAZ */,
    STATUS_BITS = 0x003f,       /* the exception flags: raised ones stay raised */
};

unsigned kp_rt_fp_mode(void)
{
    return _mm_getcsr();
}

unsigned kp_rt_fp_adopt(unsigned mode)
{
    unsigned had = _mm_getcsr();
    if ((had ^ mode) & ~STATUS_BITS)
        _mm_setcsr((mode & ~STATUS_BITS) | (had & STATUS_BITS));
    return had;
}
#else
enum { FLUSH_BITS = 0 };

unsigned kp_rt_fp_mode(void)
{
    return 0;
}

unsigned kp_rt_fp_adopt(unsigned mode)
{
    (void)mode;
    return 0;
}
#endif

unsigned kp_rt_fp_enter(void)
{
    static _Atomic int flush = -1;
    unsigned had = kp_rt_fp_mode();
    if (kp_rt_env_switch("KARP_FLUSH_DENORMALS", &flush))
        kp_rt_fp_adopt(had | FLUSH_BITS);
    return had;
}
