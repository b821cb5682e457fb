/*
 * fpmode.h — the floating-point mode generated code runs in: subnormal
 * numbers flushed to zero, as results (FTZ) and as operands (DAZ).
 *
 * On Intel cores an instruction that reads or makes a subnormal float
 * takes a microcode assist of about a hundred cycles instead of a few.
 * Training makes them: Adam's moments of a weight whose gradient stays at
 * zero (a dead ReLU unit, a pixel that is always 0) shrink by beta1 and
 * beta2 each step and spend hundreds of steps in the subnormal range, and
 * fashion_mlp's step at batch 1 ran 3.2 times slower there (docs/abi.md,
 * "Subnormal numbers").  Values below 2^-126 ~ 1.2e-38 count for nothing
 * in a network's outputs, its loss or its updates, so each call into
 * generated code runs with them flushed, on the calling thread and on
 * every thread of its parallel regions (parallel.c), and leaves each
 * thread in the mode it had before.  KARP_FLUSH_DENORMALS=0 in the
 * environment keeps IEEE subnormals.  On processors other than x86 the
 * mode is left as it is.
 */
#ifndef KP_RT_FPMODE_H
#define KP_RT_FPMODE_H

/* The calling thread's floating-point control word (0 off x86). */
unsigned kp_rt_fp_mode(void);

/* Put the calling thread into mode and return the mode it had.  Only the
 * control bits change (no write of the register when they are the
 * same): exception flags raised on the thread stay raised. */
unsigned kp_rt_fp_adopt(unsigned mode);

/* Enter generated code: the calling thread's mode with subnormals
 * flushed (unless KARP_FLUSH_DENORMALS=0); returns the mode to give back
 * to kp_rt_fp_adopt when the call returns. */
unsigned kp_rt_fp_enter(void);

#endif
