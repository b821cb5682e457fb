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
 * All are about 1-2 ulp against libm over the whole float range.
 */
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
