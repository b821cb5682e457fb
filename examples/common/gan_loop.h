/*
 * gan_loop.h — the host program shared by examples/gan and examples/dcgan:
 * two model files, a generator G (no loss; trained through D) and a
 * discriminator D, trained against each other on an image dataset.
 */
#ifndef KARP_EXAMPLE_GAN_LOOP_H
#define KARP_EXAMPLE_GAN_LOOP_H

typedef struct GanSpec {
    const char *name;          /* program name, for usage and messages */
    const char *generator;     /* default model files */
    const char *discriminator;
    int logits;                /* 1: D outputs logits (bce_logits); 0: probabilities (bce) */
    int symmetric;             /* 1: images scaled to [-1,1] (tanh generator); 0: [0,1] */
    int epochs;                /* default --epochs */
} GanSpec;

/* Parse the command line, train, write the sample grids; the exit status. */
int gan_main(const GanSpec *spec, int argc, char **argv);

#endif
