/*
 * progress.h — what `karpc train` shows while an epoch runs, on stderr: a
 * bar redrawn in place when stderr is a terminal, plain lines (about every
 * tenth of the epoch) when it is not.
 */
#ifndef KP_PROGRESS_H
#define KP_PROGRESS_H

#include <stdint.h>

typedef struct KpProgress {
    int tty;                /* stderr is a terminal: redraw a bar */
    int epoch, epochs;      /* 1-based, and the total */
    int64_t steps;          /* steps in the epoch */
    int64_t first;          /* steps already done when the epoch (re)started */
    double t0;              /* when it (re)started */
    double last_draw;
    int64_t next_line;      /* plain mode: the step of the next line */
    int drawn;              /* a bar is on the terminal's line */
} KpProgress;

/* tty: draw a bar (normally isatty(2)). */
void kp_cli_progress_init(KpProgress *p, int tty);

/* An epoch starts (or resumes) at step first of steps. */
void kp_cli_progress_epoch(KpProgress *p, int epoch, int epochs, int64_t steps, int64_t first);

/* After step `step` (1-based) of the epoch: loss and accuracy (percent,
 * < 0: none) so far in the epoch, samples trained since it (re)started.
 * Draws at most ~10 times a second on a terminal, else a line every
 * ~10% of the epoch. */
void kp_cli_progress_step(KpProgress *p, int64_t step, double loss, double acc, int64_t samples);

/* Erase the bar, so that a line can be printed. */
void kp_cli_progress_clear(KpProgress *p);

#endif
