/*
 * diag.h — diagnostics: a user's mistake, recorded, not printed.
 *
 * Library code reports a mistake in the user's input with
 *     return kp_error(d, "%s: layers[%d] (%s): 'units' must be ...", ...);
 * which records the message (the first one is kept, later ones counted) and
 * returns -1.  A bug in karpc is an assert(), never a diagnostic.
 *
 * Messages are one line, no trailing newline, and speak in the user's
 * terms: the file, then line:col or a JSON path, what was expected, what
 * was found.
 */
#ifndef KP_DIAG_H
#define KP_DIAG_H

typedef struct KpDiag {
    int nerr;
    char msg[1024];         /* the first error */
} KpDiag;

void kp_diag_init(KpDiag *d);
/* Record an error; always returns -1. */
int kp_error(KpDiag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
