/*
 * The training progress display.  On a terminal, one line redrawn in
 * place ("\r", then ESC[2K to clear it), cut to the terminal's width so it
 * never wraps:
 *
 *   epoch 2/5 [=========>          ] 469/938  loss 0.4123  acc 85.20%  52000/s  eta 0:04
 *
 * Elsewhere (a pipe, a log file) a plain line about every tenth of the
 * epoch and at its end.
 */
#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"

void kp_cli_progress_init(KpProgress *p, int tty)
{
    memset(p, 0, sizeof *p);
    p->tty = tty;
}

void kp_cli_progress_epoch(KpProgress *p, int epoch, int epochs, int64_t steps, int64_t first)
{
    p->epoch = epoch;
    p->epochs = epochs;
    p->steps = steps;
    p->first = first;
    p->t0 = kp_cli_now();
    p->last_draw = 0;
    int64_t tenth = steps / 10 > 0 ? steps / 10 : 1;
    p->next_line = (first / tenth + 1) * tenth;
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
        return ws.ws_col;
    return 80;
}

/* "loss 0.4123  acc 85.20%  52000/s" (samples per second) */
static int stats(char *buf, size_t cap, double loss, double acc, double rate, const char *unit)
{
    int n = snprintf(buf, cap, "loss %.4f", loss);
    if (acc >= 0)
        n += snprintf(buf + n, cap - (size_t)n, "  acc %.2f%%", acc);
    n += snprintf(buf + n, cap - (size_t)n, "  %.0f%s%s", rate, unit[0] == '/' ? "" : " ", unit);
    return n;
}

/* The bar takes the width the text leaves (8 to 30 cells). */
static void draw_bar(KpProgress *p, int64_t step, const char *st, double eta)
{
    char head[64], tail[256];
    int secs = (int)(eta + 0.5);
    snprintf(head, sizeof head, "epoch %d/%d ", p->epoch, p->epochs);
    snprintf(tail, sizeof tail, " %lld/%lld  %s  eta %d:%02d", (long long)step,
             (long long)p->steps, st, secs / 60, secs % 60);
    int w = term_width() - 1;
    int cells = w - (int)strlen(head) - (int)strlen(tail) - 2;
    cells = cells < 8 ? 8 : cells > 30 ? 30 : cells;
    char bar[32];
    int fill = (int)(cells * step / (p->steps ? p->steps : 1));
    for (int i = 0; i < cells; i++)
        bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
    bar[cells] = '\0';
    char line[512];
    snprintf(line, sizeof line, "%s[%s]%s", head, bar, tail);
    if ((int)strlen(line) > w)
        line[w] = '\0';
    fprintf(stderr, "\r\033[2K%s", line);
    fflush(stderr);
    p->drawn = 1;
}

void kp_cli_progress_step(KpProgress *p, int64_t step, double loss, double acc, int64_t samples)
{
    double now = kp_cli_now(), elapsed = now - p->t0;
    int last = step == p->steps;
    if (p->tty ? !last && now - p->last_draw < 0.1 : step < p->next_line && !last)
        return;
    double rate = elapsed > 0 ? (double)samples / elapsed : 0;
    int64_t done = step - p->first;
    double eta = done > 0 ? elapsed / (double)done * (double)(p->steps - step) : 0;
    char st[128];
    stats(st, sizeof st, loss, acc, rate, p->tty ? "/s" : "samples/s");
    if (p->tty) {
        draw_bar(p, step, st, eta);
        p->last_draw = now;
        return;
    }
    fprintf(stderr, "epoch %d/%d: step %lld/%lld (%d%%): %s\n", p->epoch, p->epochs,
            (long long)step, (long long)p->steps, (int)(100 * step / p->steps), st);
    int64_t tenth = p->steps / 10 > 0 ? p->steps / 10 : 1;
    while (p->next_line <= step)
        p->next_line += tenth;
}

void kp_cli_progress_clear(KpProgress *p)
{
    if (p->tty && p->drawn) {
        fputs("\r\033[2K", stderr);
        fflush(stderr);
    }
    p->drawn = 0;
}
