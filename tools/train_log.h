/*
 * train_log.h — what one epoch of `karpc train` measured, the history of
 * those, and the --log CSV file.
 */
#ifndef KP_TRAIN_LOG_H
#define KP_TRAIN_LOG_H

typedef struct KpEpochStats {
    int epoch;                 /* 1-based */
    double train_loss;
    double train_acc;          /* percent; < 0: no accuracy for this model */
    double test_loss;          /* NAN: no test split */
    double test_acc;           /* percent; < 0: no accuracy */
    double samples_per_s;      /* training steps only, not the test pass */
    double seconds;            /* the whole epoch, test pass included */
} KpEpochStats;

/* The epochs so far, in order.  Owns e; free with kp_cli_history_free. */
typedef struct KpHistory {
    KpEpochStats *e;
    int n, cap;
} KpHistory;

/* Append one epoch; -1 (reported) when out of memory. */
int kp_cli_history_add(KpHistory *h, const KpEpochStats *s);
void kp_cli_history_free(KpHistory *h);

/* Rewrite path whole (temporary file + rename): the header
 * "epoch,train_loss,train_acc,test_loss,test_acc,samples_per_s,seconds"
 * and one row per epoch, losses with 4 decimals and accuracies in percent
 * with 2 (the digits the epoch line prints), an empty field for a missing
 * value.  0, or -1 reported. */
int kp_cli_log_write(const char *path, const KpHistory *h);

/* For a resumed run: the rows of an earlier --log file with epoch <=
 * upto (1, 2, ... without a gap), put in the empty h.  A missing file is no error (h stays empty); a row
 * that does not parse ends the reading there.  0, or -1 reported. */
int kp_cli_log_read(const char *path, int upto, KpHistory *h);

#endif
