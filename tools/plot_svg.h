/*
 * plot_svg.h — the --plot file of `karpc train`: train and test loss per
 * epoch in one panel, train and test accuracy in the other, as a
 * self-contained SVG (no scripts, no external fonts or styles).
 */
#ifndef KP_PLOT_SVG_H
#define KP_PLOT_SVG_H

#include "train_log.h"

/* Rewrite path whole (temporary file + rename) with the plot of h; title
 * is shown on top (escaped).  0, or -1 reported. */
int kp_cli_plot_write(const char *path, const char *title, const KpHistory *h);

#endif
