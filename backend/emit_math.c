/*
 * emit_math.c — e^x, tanh and sigmoid as straight-line IR, so that loops
 * calling them vectorize (a call to libm's expf would not).
 *
 * exp:  x = k ln2 + r, |r| <= ln2/2, k = rint(x / ln2)
 *       e^r by a degree-7 minimax polynomial (Cephes expf coefficients),
 *       e^x = e^r * 2^(k/2) * 2^(k - k/2), each power built from exponent
 *       bits.  Splitting the scale lets results go smoothly into the
 *       subnormals (down to x = -104, then 0) and overflow to +inf above
 *       ln(FLT_MAX), like expf.  NaN stays NaN.
 * tanh: a = |x|; a < 0.625: a + a^3 P(a^2) (Cephes tanhf's odd polynomial),
 *       else 1 - 2/(e^{2a} + 1); then the sign of x.
 * sigmoid: 1 / (1 + e^{-x}).
 * log:  x = m 2^k with m in [sqrt(1/2), sqrt(2)) from the exponent bits
 *       (subnormals scaled by 2^23 first), ln m = f - f^2/2 + f^3 P(f),
 *       f = m - 1 (Cephes logf), plus k ln2 in two parts.
 * log1p: u = 1 + x; ln u * x / (u - 1), which cancels the rounding of
 *       1 + x (Goldberg's trick); x itself when u rounds to 1.
 * All are about 1-2 ulp against libm over the whole float range.
 */
#include <math.h>

#include "emit.h"

static LLVMValueRef fmul(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFMul(e->b, a, b, "");
}

static LLVMValueRef fadd(KpEmit *e, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFAdd(e->b, a, b, "");
}

/* 2^k for an integer vector k in [-126, 127], as a float. */
static LLVMValueRef pow2i(KpEmit *e, LLVMValueRef k, LLVMTypeRef fty)
{
    LLVMValueRef biased = LLVMBuildAdd(e->b, k, kp_iconst_like(e, fty, 127), "");
    LLVMValueRef bits = LLVMBuildShl(e->b, biased, kp_iconst_like(e, fty, 23), "");
    return LLVMBuildBitCast(e->b, bits, fty, "");
}

LLVMValueRef kp_emit_exp(KpEmit *e, LLVMValueRef x)
{
    LLVMTypeRef ty = LLVMTypeOf(x);
    LLVMTypeRef ity = LLVMGetTypeKind(ty) == LLVMVectorTypeKind
                          ? LLVMVectorType(e->i32, LLVMGetVectorSize(ty))
                          : e->i32;
    /* clamp; maxnum/minnum map NaN to a bound, restored at the end */
    LLVMValueRef xc = kp_min(e, kp_max(e, x, kp_fconst(ty, -104.0)), kp_fconst(ty, 89.0));
    LLVMValueRef t = fmul(e, xc, kp_fconst(ty, 1.44269504088896341));
    LLVMValueRef kf = kp_intrinsic(e, "llvm.rint", &ty, 1, &t, 1);
    LLVMValueRef nk = LLVMBuildFNeg(e->b, kf, "");
    LLVMValueRef r = kp_fma(e, nk, kp_fconst(ty, 0.693359375), xc);
    r = kp_fma(e, nk, kp_fconst(ty, -2.12194440e-4), r);

    static const double c[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                               4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
    LLVMValueRef p = kp_fconst(ty, c[0]);
    for (int i = 1; i < 6; i++)
        p = kp_fma(e, p, r, kp_fconst(ty, c[i]));
    LLVMValueRef r2 = fmul(e, r, r);
    LLVMValueRef er = kp_fma(e, p, r2, fadd(e, r, kp_fconst(ty, 1.0)));

    LLVMValueRef k = LLVMBuildFPToSI(e->b, kf, ity, "");
    LLVMValueRef k1 = LLVMBuildAShr(e->b, k, kp_iconst_like(e, ty, 1), "");
    LLVMValueRef k2 = LLVMBuildSub(e->b, k, k1, "");
    LLVMValueRef y = fmul(e, fmul(e, er, pow2i(e, k1, ty)), pow2i(e, k2, ty));
    LLVMValueRef isnan = LLVMBuildFCmp(e->b, LLVMRealUNO, x, x, "");
    return LLVMBuildSelect(e->b, isnan, x, y, "");
}

LLVMValueRef kp_emit_tanh(KpEmit *e, LLVMValueRef x)
{
    LLVMTypeRef ty = LLVMTypeOf(x);
    LLVMValueRef ax = kp_intrinsic(e, "llvm.fabs", &ty, 1, &x, 1);

    /* small: a + a z P(z), z = a^2 = x^2 */
    static const double c[] = {-5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2,
                               1.33314422036E-1, -3.33332819422E-1};
    LLVMValueRef z = fmul(e, x, x);
    LLVMValueRef p = kp_fconst(ty, c[0]);
    for (int i = 1; i < 5; i++)
        p = kp_fma(e, p, z, kp_fconst(ty, c[i]));
    LLVMValueRef small = kp_fma(e, fmul(e, p, z), ax, ax);

    /* large: 1 - 2/(e^{2a} + 1) */
    LLVMValueRef e2 = kp_emit_exp(e, fadd(e, ax, ax));
    LLVMValueRef q = LLVMBuildFDiv(e->b, kp_fconst(ty, 2.0), fadd(e, e2, kp_fconst(ty, 1.0)), "");
    LLVMValueRef large = LLVMBuildFSub(e->b, kp_fconst(ty, 1.0), q, "");

    /* |tanh x| of the two, then the sign of x (also for -0) */
    LLVMValueRef is_small = LLVMBuildFCmp(e->b, LLVMRealOLT, ax, kp_fconst(ty, 0.625), "");
    LLVMTypeRef over[1] = {ty};
    LLVMValueRef sargs[2] = {LLVMBuildSelect(e->b, is_small, small, large, ""), x};
    LLVMValueRef y = kp_intrinsic(e, "llvm.copysign", over, 1, sargs, 2);
    LLVMValueRef isnan = LLVMBuildFCmp(e->b, LLVMRealUNO, x, x, "");
    return LLVMBuildSelect(e->b, isnan, x, y, "");
}

LLVMValueRef kp_emit_sigmoid(KpEmit *e, LLVMValueRef x)
{
    LLVMTypeRef ty = LLVMTypeOf(x);
    LLVMValueRef em = kp_emit_exp(e, LLVMBuildFNeg(e->b, x, ""));
    return LLVMBuildFDiv(e->b, kp_fconst(ty, 1.0), fadd(e, kp_fconst(ty, 1.0), em), "");
}

static LLVMTypeRef int_like(KpEmit *e, LLVMTypeRef ty)
{
    return LLVMGetTypeKind(ty) == LLVMVectorTypeKind ? LLVMVectorType(e->i32, LLVMGetVectorSize(ty))
                                                     : e->i32;
}

LLVMValueRef kp_emit_log(KpEmit *e, LLVMValueRef x)
{
    LLVMTypeRef ty = LLVMTypeOf(x), ity = int_like(e, ty);
    /* subnormals: scale into the normals, 23 off the exponent */
    LLVMValueRef tiny = LLVMBuildFCmp(e->b, LLVMRealOLT, x, kp_fconst(ty, 1.17549435e-38), "");
    LLVMValueRef xs = LLVMBuildSelect(e->b, tiny, fmul(e, x, kp_fconst(ty, 8388608.0)), x, "");
    LLVMValueRef kadj = LLVMBuildSelect(e->b, tiny, kp_iconst_like(e, ty, 23), kp_iconst_like(e, ty, 0), "");
    LLVMValueRef bits = LLVMBuildBitCast(e->b, xs, ity, "");
    /* m in [0.5, 1), x = m 2^k */
    LLVMValueRef k = LLVMBuildSub(e->b, LLVMBuildLShr(e->b, bits, kp_iconst_like(e, ty, 23), ""),
                                  kp_iconst_like(e, ty, 126), "");
    k = LLVMBuildSub(e->b, k, kadj, "");
    LLVMValueRef mbits = LLVMBuildOr(e->b, LLVMBuildAnd(e->b, bits, kp_iconst_like(e, ty, 0x007fffff), ""),
                                     kp_iconst_like(e, ty, 0x3f000000), "");
    LLVMValueRef m = LLVMBuildBitCast(e->b, mbits, ty, "");
    /* m < sqrt(1/2): f = 2m - 1, k - 1; else f = m - 1 */
    LLVMValueRef low = LLVMBuildFCmp(e->b, LLVMRealOLT, m, kp_fconst(ty, 0.707106781186547524), "");
    LLVMValueRef f = LLVMBuildFSub(e->b, LLVMBuildSelect(e->b, low, fadd(e, m, m), m, ""),
                                   kp_fconst(ty, 1.0), "");
    k = LLVMBuildSub(e->b, k, LLVMBuildSelect(e->b, low, kp_iconst_like(e, ty, 1),
                                              kp_iconst_like(e, ty, 0), ""), "");
    LLVMValueRef kf = LLVMBuildSIToFP(e->b, k, ty, "");

    static const double c[] = {7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1,
                               -1.2420140846E-1, 1.4249322787E-1, -1.6668057665E-1,
                               2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1};
    LLVMValueRef p = kp_fconst(ty, c[0]);
    for (int i = 1; i < 9; i++)
        p = kp_fma(e, p, f, kp_fconst(ty, c[i]));
    LLVMValueRef z = fmul(e, f, f);
    LLVMValueRef y = fmul(e, fmul(e, p, f), z);
    y = kp_fma(e, kf, kp_fconst(ty, -2.12194440e-4), y);
    y = kp_fma(e, z, kp_fconst(ty, -0.5), y);
    LLVMValueRef r = fadd(e, f, y);
    r = kp_fma(e, kf, kp_fconst(ty, 0.693359375), r);

    /* 0 -> -inf; below 0 or NaN -> NaN; +inf -> +inf */
    LLVMValueRef zero = LLVMBuildFCmp(e->b, LLVMRealOEQ, x, kp_fconst(ty, 0.0), "");
    LLVMValueRef bad = LLVMBuildFCmp(e->b, LLVMRealULT, x, kp_fconst(ty, 0.0), "");
    LLVMValueRef inf = LLVMBuildFCmp(e->b, LLVMRealOEQ, x, kp_fconst(ty, INFINITY), "");
    r = LLVMBuildSelect(e->b, inf, x, r, "");
    r = LLVMBuildSelect(e->b, zero, kp_fconst(ty, -INFINITY), r, "");
    return LLVMBuildSelect(e->b, bad, kp_fconst(ty, NAN), r, "");
}

LLVMValueRef kp_emit_log1p(KpEmit *e, LLVMValueRef x)
{
    LLVMTypeRef ty = LLVMTypeOf(x);
    LLVMValueRef u = fadd(e, x, kp_fconst(ty, 1.0));
    LLVMValueRef um1 = LLVMBuildFSub(e->b, u, kp_fconst(ty, 1.0), "");
    LLVMValueRef lu = kp_emit_log(e, u);
    LLVMValueRef r = LLVMBuildFDiv(e->b, fmul(e, lu, x), um1, "");
    LLVMValueRef exact = LLVMBuildFCmp(e->b, LLVMRealOEQ, um1, kp_fconst(ty, 0.0), "");
    LLVMValueRef inf = LLVMBuildFCmp(e->b, LLVMRealOEQ, u, kp_fconst(ty, INFINITY), "");
    r = LLVMBuildSelect(e->b, exact, x, r, "");
    return LLVMBuildSelect(e->b, inf, u, r, "");
}
