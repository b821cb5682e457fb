/* karpc — compile a model file to native code, train it, or evaluate it. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "karp.h"
#include "../runtime/clock.h"

static const char usage[] =
    "usage: karpc model.json -o model.so [--header model.h] [-O0..3]\n"
    "             [--emit=ir|dot|llvm|asm|obj] [--dump-after=PASS] [--no-fuse] [--no-layout]\n"
    "             [--no-memplan] [--no-fold] [--no-group] [--target-cpu=CPU]\n"
    "             [--target-features=+f,-g] [--batch N] [--jobs N] [--stats]\n"
    "       PASS: shapes, verify, autodiff, simplify, fold, fusion, layout, group, memplan\n"
    "             (--emit=dot with --dump-after prints Graphviz)\n"
    "       karpc train model.json|model.so --data SPEC [--epochs N] [--batch N] [--threads N]\n"
    "             [--save ckpt.safetensors [--save-every STEPS]] [--load ckpt.safetensors]\n"
    "             [--log log.csv]"
    " [--plot loss.svg] [--seed N] [--augment hflip,random_crop=P,rotate=D,noise=S]\n"
    "             [--normalize MEAN/STD|M1,M2,../S1,S2,..] [--check-numerics]\n"
    "       karpc eval model.json|model.so --data SPEC [--load ckpt.safetensors] [--batch N]\n"
    "             [--threads N] [--show K] [--normalize MEAN/STD]\n"
    "       karpc bench model.json [--batch N] [--threads N] [--json] [--peers] [--repeats N]\n"
    "             [--no-kernels] [--no-group]\n"
    "       SPEC: fashion-mnist, fashion-mnist:DIR, mnist:DIR, cifar10:DIR, csv:FILE\n"
    "       karpc --version\n";

int kp_cli_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("karpc: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int kp_cli_int(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        kp_cli_fail("%s expects an integer between %ld and %ld, got '%s'", opt, lo, hi,
                    s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

const char *kp_cli_take(int argc, char **argv, int *i, const char *name, int *missing)
{
    size_t n = strlen(name);
    const char *arg = argv[*i];
    if (strncmp(arg, name, n) == 0 && arg[n] == '=')
        return arg + n + 1;
    if (strcmp(arg, name) != 0)
        return NULL;
    if (*i + 1 < argc)
        return argv[++*i];
    *missing = 1;
    kp_cli_fail("%s needs a value", name);
    return NULL;
}

double kp_cli_now(void)
{
    return kp_seconds();
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("karpc %d.%d\n", KARP_VERSION_MAJOR, KARP_VERSION_MINOR);
        return 0;
    }
    if (strcmp(argv[1], "eval") == 0)
        return kp_cmd_eval(argc - 1, argv + 1);
    if (strcmp(argv[1], "train") == 0)
        return kp_cmd_train(argc - 1, argv + 1);
    if (strcmp(argv[1], "bench") == 0)
        return kp_cmd_bench(argc - 1, argv + 1);
    return kp_cmd_compile(argc, argv);
}
