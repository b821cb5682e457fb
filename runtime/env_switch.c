/*
 * env_switch.c — switches read from the environment once (env_switch.h).
 */
#include "env_switch.h"

#include <stdlib.h>
#include <string.h>

int kp_rt_env_switch(const char *name, _Atomic int *cache)
{
    int on = *cache;
    if (on < 0) {
        const char *s = getenv(name);
        *cache = on = !(s && strcmp(s, "0") == 0);
    }
    return on;
}
