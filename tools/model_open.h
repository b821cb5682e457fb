/*
 * model_open.h — a model for `karpc train` and `karpc eval`, from a model
 * file (JIT-compiled in-process) or a shared library written by karpc,
 * and its data prepared the way the model file says.
 */
#ifndef KP_MODEL_OPEN_H
#define KP_MODEL_OPEN_H

#include <stdint.h>

#include "../runtime/data.h"
#include "karp.h"

/* model.json (any path ending in .json): karp_compile with max_batch (0:
 * the model's); anything else: karp_open.  NULL with the reason in *err. */
karp_model *kp_cli_open_model(const char *path, long max_batch, int check_numerics,
                              karp_error *err);

/* The defaults a model gives `karpc train` and `karpc eval`: its seed and
 * its "train" section's epochs (0 when absent), normalization and
 * augmentation, which model.json and model.so carry alike — or the
 * command line's --normalize and --augment. */
typedef struct KpTrainDefaults {
    long epochs;
    uint64_t seed;
    int nmean, nstd;        /* train.normalize (0: none) */
    float mean[16], std[16];
    const char *norm_from;  /* "train.normalize" or "--normalize", for messages */
    int naug;               /* train.augment, in order */
    karp_augment aug[KP_MAX_AUGMENT];
    const char *aug_from;   /* "train.augment" or "--augment" */
} KpTrainDefaults;

/* --augment LIST (data_opts.c): "hflip,random_crop=4,rotate=15,noise=0.1"
 * in order of application, or "none"; replaces d's list.  0, or 1
 * reported. */
int kp_cli_parse_augment(const char *s, KpTrainDefaults *d);
/* --normalize MEAN/STD, M1,M2,.../S1,S2,..., or "none"; replaces d's.  0,
 * or 1 reported. */
int kp_cli_parse_normalize(const char *s, KpTrainDefaults *d);
/* "hflip,random_crop=4" into buf ("" for none). */
void kp_cli_format_augment(char *buf, size_t cap, const karp_augment *aug, int naug);

/* Fill *d from a model's info. */
void kp_cli_train_defaults(const karp_info *info, KpTrainDefaults *d);

/* What both train and eval start with: threads (0: the default), the
 * model (kp_cli_open_model; a model file compiled for the numerics check
 * with check_numerics), its info and its train defaults.  0, or -1
 * reported; *m (the caller's to close) may be set even then. */
int kp_cli_model_start(const char *path, long max_batch, long threads, int check_numerics,
                       karp_model **m, karp_info *info, KpTrainDefaults *d);

/* Split "train" or "test" of the --data spec, normalized as d says, its
 * samples checked against the model's input size.  0, or -1 reported.
 * (karpc train opens its train split with a d without normalization:
 * its loader normalizes after augmenting.) */
int kp_cli_open_data(const char *spec, const char *split, const KpTrainDefaults *d,
                     const karp_info *info, const char *model, KpDataset *ds);

#endif
