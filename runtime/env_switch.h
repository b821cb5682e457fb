/*
 * env_switch.h — a runtime behaviour the environment can switch off:
 * on unless NAME=0 (KARP_ADAPTIVE_THREADS, KARP_FLUSH_DENORMALS), read
 * once per process, since the callers sit on the path of every call.
 */
#ifndef KP_RT_ENV_SWITCH_H
#define KP_RT_ENV_SWITCH_H

/* 1 unless the environment sets name to "0"; *cache starts at -1 and
 * keeps the answer (two first readers store the same). */
int kp_rt_env_switch(const char *name, _Atomic int *cache);

#endif
