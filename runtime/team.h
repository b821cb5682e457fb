/*
 * team.h — the runtime's own worker threads for krt_parallel_for and
 * krt_parallel_run (team.c): a parallel region that starts and joins in
 * about 0.15 us where an OpenMP region takes about 0.8 us.
 */
#ifndef KP_RT_TEAM_H
#define KP_RT_TEAM_H

#include <stddef.h>

/* A job: share(arg, t) for t = 0 .. nt-1.  The rest says which of the
 * caller's cache lines a worker reads (and writes) first, so that it asks
 * for all of them at once when it sees the job instead of one after the
 * other as its code reaches them: between cores that share no cache each
 * such wait is a few hundred ns (docs/abi.md, "Adaptive thread count"). */
typedef struct KpTeamJob {
    void (*share)(void *arg, int t);
    void *arg;
    size_t arg_bytes;       /* the bytes at arg a share reads first */
    const void *ctx;        /* and the 128 bytes from here (NULL: none) */
    void *lines;            /* nt lines of 64 bytes, line t share t's own: it
                               writes that one and reads the others (NULL: none) */
} KpTeamJob;

/* Run the job, share 0 on the calling thread and the others on the team's
 * threads, and return when all are done: 0.  -1 without running anything
 * when the team cannot take the job (nt < 2, the team busy with another
 * caller's job, a call from inside a share, or no threads to be had): the
 * caller runs the region another way. */
int kp_rt_team_run(int nt, const KpTeamJob *job);

/* Whether the calling thread runs a share of a team job now. */
int kp_rt_in_team(void);

#endif
