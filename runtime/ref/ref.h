/*
 * ref.h — reference kernels: plain, obviously correct C for every op,
 * forward and backward side by side.  They are the oracle of the tests
 * and the baseline of `karpc bench`; speed is not their concern.
 * Shapes are written above each kernel; all tensors are row-major.
 */
#ifndef KP_REF_H
#define KP_REF_H

#include <stdint.h>

/* x (n,in), w (out,in), b (out) or NULL -> y (n,out) */
void kp_ref_dense_forward(float *y, const float *x, const float *w, const float *b, int64_t n,
                          int64_t in, int64_t out);
/* dy (n,out) -> dx (n,in) (may be NULL), dw (out,in) +=, db (out) += (may be NULL) */
void kp_ref_dense_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                           const float *w, int64_t n, int64_t in, int64_t out);

/* elementwise over count floats: y = f(x); backward dx = dy * f'(.) */
void kp_ref_relu_forward(float *y, const float *x, int64_t count);
void kp_ref_relu_backward(float *dx, const float *dy, const float *x, int64_t count);
void kp_ref_leaky_relu_forward(float *y, const float *x, float alpha, int64_t count);
void kp_ref_leaky_relu_backward(float *dx, const float *dy, const float *x, float alpha, int64_t count);
void kp_ref_sigmoid_forward(float *y, const float *x, int64_t count);
void kp_ref_sigmoid_backward(float *dx, const float *dy, const float *y, int64_t count);
void kp_ref_tanh_forward(float *y, const float *x, int64_t count);
void kp_ref_tanh_backward(float *dx, const float *dy, const float *y, int64_t count);

/* x (rows,cols) -> y (rows,cols), softmax along each row */
void kp_ref_softmax_forward(float *y, const float *x, int64_t rows, int64_t cols);
/* y, dy (rows,cols) -> dx (rows,cols) */
void kp_ref_softmax_backward(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols);

#endif
