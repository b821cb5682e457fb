/*
 * dcgan — the DCGAN of TensorFlow's tutorial on 28x28 images
 * (Fashion-MNIST by default): generator.json maps 100 normal noise values
 * through dense, batchnorm and three transposed convolutions to an image
 * in [-1,1] (tanh); discriminator.json is two strided convolutions with
 * dropout and a dense logit (bce_logits).  Real images are scaled to
 * [-1,1].
 *
 *   dcgan [--data fashion-mnist] [--epochs 1] [--batch 64] [--limit N]
 *         [--out dcgan] [--seed 1] [--threads N]
 *
 * After each epoch, OUT/epoch_NNN.png holds 64 samples from fixed noise.
 * The training loop is examples/common/gan_loop.c.
 */
#include "gan_loop.h"

int main(int argc, char **argv)
{
    GanSpec spec = {
        .name = "dcgan",
        .generator = KARP_EXAMPLE_DIR "/generator.json",
        .discriminator = KARP_EXAMPLE_DIR "/discriminator.json",
        .logits = 1,
        .symmetric = 1,
        .epochs = 1,
    };
    return gan_main(&spec, argc, argv);
}
