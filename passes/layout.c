/*
 * layout.c — internal layouts for the kernels, packed once in the prepare
 * entry (KP_PHASE_PREPARE), never per call.
 *
 * Chosen here: the weight of a dense layer whose weight is a constant (a
 * parameter, or a PREPARE value such as a batchnorm-folded weight) is
 * packed into panels of P = 16 output columns,
 *
 *     W [out,in]  ->  panels [ceil(out/P)][in][P],  panel[j][k][l] = W[P*j + l][k]
 *
 * zero-padded past out (pack_panels), and the dense becomes dense_packed,
 * which reads one panel row (P floats, contiguous) per k and broadcasts
 * x[r,k]: an outer-product gemm with no horizontal sums.  P = 16 is one
 * AVX-512 vector, two AVX2 vectors; the emitter splits a panel into
 * vectors of the target's width, so the graph does not depend on it.
 * The epilogues a dense got from fusion stay with it, and their operands
 * keep their input positions.
 *
 * A conv2d whose constant weight has rows a multiple of 1 KiB long (256
 * input channels of 3x3, say) gets them padded by one cache line
 * (pad_rows, attr.wstride): rows 1 KiB apart fall in the same L1 sets,
 * and the GEMM would otherwise copy them into its scratch on every call
 * (gemm_plan.c, rows_collide).  The kernels read the rest of the weight
 * as before: it stays [F, C*kh*kw] in PyTorch's order, rows apart.
 *
 * Not done: channel-blocked activations and weights for conv2d (the conv
 * kernels keep NCHW); no reorders are ever needed since only constant
 * weights change layout.  Parameters, gradients and checkpoints keep the
 * PyTorch layout; train graphs are left alone.
 */
#include "passes.h"
#include "prep_util.h"

enum {
    PANEL = 16,
    ROW_SETS = 256,     /* floats: rows a multiple of 1 KiB apart share L1 sets */
    ROW_PAD = 16        /* floats: one cache line */
};

static bool is_const(const KpValue *v)
{
    return v->role == KP_ROLE_PARAM || (v->producer && v->producer->phase == KP_PHASE_PREPARE);
}

/* Whether input i of n is an operand of one of its epilogues (not the bias). */
static bool reads_as_epilogue(const KpNode *n, int i)
{
    for (int k = 0; k < n->nepi; k++)
        for (int a = 0; a < n->epi[k].nargs; a++)
            if (n->epi[k].arg[a] == i)
                return true;
    return false;
}

int kp_pass_layout(KpGraph *g, const KpPassOpts *o, KpDiag *d)
{
    if (g->training) {
        kp_pass_report(o, "train graph: layouts unchanged");
        return 0;
    }
    int n0 = g->nnodes, packed = 0, padded = 0;
    for (int k = 0; k < n0; k++) {
        KpNode *n = g->nodes[k];
        if (n->op == KP_OP_conv2d && n->phase == KP_PHASE_FORWARD && is_const(n->in[1]) &&
            n->attr.wstride == 0 && n->in[1]->rank == 4) {
            int64_t per = kp_value_numel(n->in[1], 1) / n->in[1]->dims[0];
            if (per % ROW_SETS != 0)
                continue;
            KpAttrs at = {.wstride = per + ROW_PAD};
            KpNode *pr = kp_prep_node(g, KP_OP_pad_rows, n, 1, &n->in[1], &at, d);
            if (!pr)
                return -1;
            n->in[1] = pr->out;
            n->attr.wstride = at.wstride;
            if (kp_node_infer_shape(g, n, d))
                return -1;
            padded++;
            continue;
        }
        if (n->op != KP_OP_dense || n->phase != KP_PHASE_FORWARD || !is_const(n->in[1]))
            continue;
        KpAttrs at = {.panel = PANEL};
        KpNode *pk = kp_prep_node(g, KP_OP_pack_panels, n, 1, &n->in[1], &at, d);
        if (!pk)
            return -1;
        n->op = KP_OP_dense_packed;
        n->in[1] = pk->out;
        n->attr.panel = PANEL;
        n->attr.units = n->out->dims[1];
        n->attr.has_bias = n->nin >= 3 && !reads_as_epilogue(n, 2);
        if (kp_node_infer_shape(g, n, d))
            return -1;
        packed++;
    }
    if (kp_prep_reorder(g, NULL, d))
        return -1;
    kp_pass_report(o, "packed %d dense weights into %d-float panels, padded the rows of %d conv weights",
                   packed, PANEL, padded);
    return 0;
}
