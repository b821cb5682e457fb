/*
 * gan — a fully connected GAN on 28x28 images (Fashion-MNIST by default):
 * generator.json maps 100 normal noise values to an image in [0,1],
 * discriminator.json tells real from generated (BCE on probabilities).
 *
 *   gan [--data fashion-mnist] [--epochs 5] [--batch 64] [--limit N]
 *       [--out gan] [--seed 1] [--threads N]
 *
 * After each epoch, OUT/epoch_NNN.png holds 64 samples from fixed noise.
 * The training loop is examples/common/gan_loop.c.
 */
#include "gan_loop.h"

int main(int argc, char **argv)
{
    GanSpec spec = {
        .name = "gan",
        .generator = KARP_EXAMPLE_DIR "/generator.json",
        .discriminator = KARP_EXAMPLE_DIR "/discriminator.json",
        .logits = 0,
        .symmetric = 0,
        .epochs = 5,
    };
    return gan_main(&spec, argc, argv);
}
