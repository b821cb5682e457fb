/*
 * checkpoint.h — what a checkpoint of a model holds, as one table that
 * karp_save writes and karp_load checks a file against (so the two cannot
 * disagree).  Internal to libkarprt.
 *
 * In order: every parameter under its PyTorch name (F32, its shape); for
 * a model with optimizer state, per trainable parameter p and per slot,
 * "optimizer.<p>.exp_avg", "optimizer.<p>.exp_avg_sq" (2 slots: adam) or
 * "optimizer.<p>.momentum_buffer" (1 slot: momentum), F32 with p's shape;
 * for a model with an optimizer, "optimizer.step" (I64, shape []).
 */
#ifndef KP_RT_CHECKPOINT_H
#define KP_RT_CHECKPOINT_H

#include "model.h"

#define KP_CKPT_STEP_NAME "optimizer.step"

enum { KP_CKPT_PARAM, KP_CKPT_OPT, KP_CKPT_STEP };

typedef struct KpCkptTensor {
    char *name;
    int group;              /* KP_CKPT_* */
    int rank;
    const int64_t *shape;   /* the parameter's (NULL for the step) */
    int64_t bytes;          /* of data in the file */
    int64_t offset;         /* in floats: into params (PARAM) or opt (OPT) */
} KpCkptTensor;

typedef struct KpCkpt {
    KpCkptTensor *t;
    int count;
    int nopt;               /* how many KP_CKPT_OPT tensors */
    int has_step;           /* the model has an optimizer */
} KpCkpt;

/* Integrity keys karp_save writes into "__metadata__" and karp_load
 * verifies when present (files from other writers have none):
 *   "karp.signature"       16 hex digits: FNV-1a 64 of every parameter's
 *                          "name:F32:[d0,d1,..]\n" in the descriptor's order
 *   "karp.crc32c.<tensor>" 8 hex digits: CRC-32C of that tensor's data bytes
 * Keys starting with "karp." are reserved: karp_set_metadata refuses them
 * and karp_load does not pass them on to karp_get_metadata. */
#define KP_CKPT_SIGNATURE_KEY "karp.signature"
#define KP_CKPT_CRC_PREFIX "karp.crc32c."
#define KP_CKPT_RESERVED_PREFIX "karp."

/* CRC-32C (Castagnoli, reflected, as iSCSI/ext4): crc of a whole buffer is
 * kp_rt_crc32c(0, p, n); pass the previous result to continue. */
uint32_t kp_rt_crc32c(uint32_t crc, const void *p, size_t n);
/* The signature of d's parameters, as 16 hex digits + NUL into out. */
void kp_rt_ckpt_signature(const KarpModelDesc *d, char out[17]);

/* Fill c from the descriptor; 0, or KARP_ENOMEM with c empty. */
int kp_rt_ckpt_build(const KarpModelDesc *d, KpCkpt *c);
void kp_rt_ckpt_free(KpCkpt *c);

#endif
