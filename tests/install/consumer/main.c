/* Compile a model with the installed libkarpc, run it, print one number. */
#include <stdio.h>

#include <karpc.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    karp_error err;
    karp_model *m = karp_compile(argv[1], NULL, &err);
    if (!m) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    static float x[784], y[10];
    for (int i = 0; i < 784; i++)
        x[i] = (float)(i % 17) / 17.0f;
    if (karp_infer(m, x, 1, y) != 0) {
        fprintf(stderr, "%s\n", karp_last_error());
        return 1;
    }
    printf("consumer ok: y[0] = %.6g\n", y[0]);
    karp_close(m);
    return 0;
}
