/*
 * json_scan.c — a strict JSON syntax check with useful messages.
 *
 * A recursive descent over the text that builds nothing: it stops at the
 * first error with its byte offset and a description in the user's terms
 * ("expected ',' or '}', got '\"'", "trailing comma before ']'"), and
 * otherwise records the offset of every value in document order, which is
 * the order in which the cJSON tree is later walked.
 *
 * It is stricter than cJSON (leading zeros, control characters in strings,
 * "\u0000", numbers longer than cJSON's 63-character buffer are refused),
 * so text it accepts is text cJSON parses the same way.
 */
#include "json_doc.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

enum { MAX_DEPTH = 100, MAX_NUMBER_LEN = 63 };

typedef struct Scan {
    KpJsonDoc *doc;
    KpArena *a;
    const char *s;
    size_t n, i;
    int cap;
    bool failed;
    size_t err_off;
    char err[200];
} Scan;

static int fail_at(Scan *sc, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail_at(Scan *sc, size_t off, const char *fmt, ...)
{
    if (!sc->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sc->err, sizeof sc->err, fmt, ap);
        va_end(ap);
        sc->err_off = off;
        sc->failed = true;
    }
    return -1;
}

/* The character at off, quoted for a message: 'x', or byte 0xNN. */
static const char *show_char(const Scan *sc, size_t off, char buf[16])
{
    unsigned char c = (unsigned char)sc->s[off];
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, 16, "'%c'", c);
    else
        snprintf(buf, 16, "byte 0x%02X", c);
    return buf;
}

/* Offset just past the last non-blank character before off: where an
 * "unexpected end of file" is reported. */
static size_t end_of_content(const Scan *sc)
{
    size_t i = sc->n;
    while (i > 0 && strchr(" \t\r\n", sc->s[i - 1]))
        i--;
    return i;
}

static int fail_eof(Scan *sc, const char *expected)
{
    return fail_at(sc, end_of_content(sc), "unexpected end of file, expected %s", expected);
}

static void skip_ws(Scan *sc)
{
    while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t' ||
                             sc->s[sc->i] == '\r' || sc->s[sc->i] == '\n'))
        sc->i++;
}

static int record(Scan *sc, size_t key_off)
{
    KpJsonDoc *doc = sc->doc;
    if (doc->nvals == sc->cap) {
        int cap = sc->cap ? 2 * sc->cap : 64;
        doc->val_off = kp_arena_grow(sc->a, doc->val_off, (size_t)doc->nvals, (size_t)cap,
                                     sizeof *doc->val_off);
        doc->key_off = kp_arena_grow(sc->a, doc->key_off, (size_t)doc->nvals, (size_t)cap,
                                     sizeof *doc->key_off);
        if (!doc->val_off || !doc->key_off)
            return fail_at(sc, sc->i, "out of memory");
        sc->cap = cap;
    }
    doc->val_off[doc->nvals] = sc->i;
    doc->key_off[doc->nvals] = key_off;
    doc->nvals++;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits at sc->i + 2 (after "\u"), or -1. */
static long hex4(const Scan *sc, size_t at)
{
    if (at + 6 > sc->n)
        return -1;
    long v = 0;
    for (size_t k = at + 2; k < at + 6; k++) {
        int h = hexval(sc->s[k]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static int scan_escape(Scan *sc)
{
    size_t at = sc->i;
    if (at + 1 >= sc->n)
        return fail_eof(sc, "'\"'");
    char c = sc->s[at + 1];
    if (strchr("\"\\/bfnrt", c)) {
        sc->i += 2;
        return 0;
    }
    if (c != 'u') {
        if (c > 0x20 && c < 0x7f)
            return fail_at(sc, at, "invalid escape '\\%c' in string", c);
        return fail_at(sc, at, "invalid escape in string");
    }
    long u = hex4(sc, at);
    if (u < 0)
        return fail_at(sc, at, "'\\u' must be followed by 4 hex digits");
    if (u == 0)
        return fail_at(sc, at, "'\\u0000' is not allowed in strings");
    if (u >= 0xDC00 && u <= 0xDFFF)
        return fail_at(sc, at, "unpaired UTF-16 surrogate '\\u%04lX'", u);
    sc->i += 6;
    if (u >= 0xD800 && u <= 0xDBFF) {
        long lo = sc->i + 1 < sc->n && sc->s[sc->i] == '\\' && sc->s[sc->i + 1] == 'u'
                      ? hex4(sc, sc->i) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return fail_at(sc, at, "unpaired UTF-16 surrogate '\\u%04lX'", u);
        sc->i += 6;
    }
    return 0;
}

static int scan_string(Scan *sc)
{
    size_t open = sc->i++;
    for (;;) {
        if (sc->i >= sc->n)
            return fail_at(sc, open, "unterminated string");
        unsigned char c = (unsigned char)sc->s[sc->i];
        if (c == '"') {
            sc->i++;
            return 0;
        }
        if (c == '\n')
            return fail_at(sc, open, "unterminated string (a string cannot span lines)");
        if (c < 0x20) {
            char buf[16];
            return fail_at(sc, sc->i, "unescaped control character (%s) in string",
                           show_char(sc, sc->i, buf));
        }
        if (c == '\\') {
            if (scan_escape(sc) < 0)
                return -1;
        } else {
            sc->i++;
        }
    }
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
           c == '.' || c == '+' || c == '-';
}

static int scan_digits(Scan *sc)
{
    size_t start = sc->i;
    while (sc->i < sc->n && is_digit(sc->s[sc->i]))
        sc->i++;
    return sc->i > start ? 0 : -1;
}

static int scan_number(Scan *sc)
{
    size_t start = sc->i;
    size_t end = start;
    while (end < sc->n && is_word_char(sc->s[end]))
        end++;
    int shown = end - start > 24 ? 24 : (int)(end - start);
    const char *dots = end - start > 24 ? "..." : "";
    if (sc->s[sc->i] == '-')
        sc->i++;
    if (sc->i < sc->n && sc->s[sc->i] == '0' && sc->i + 1 < sc->n && is_digit(sc->s[sc->i + 1]))
        return fail_at(sc, start, "invalid number '%.*s%s' (leading zeros are not allowed)", shown,
                       sc->s + start, dots);
    int bad = scan_digits(sc);
    if (!bad && sc->i < sc->n && sc->s[sc->i] == '.') {
        sc->i++;
        bad = scan_digits(sc);
    }
    if (!bad && sc->i < sc->n && (sc->s[sc->i] == 'e' || sc->s[sc->i] == 'E')) {
        sc->i++;
        if (sc->i < sc->n && (sc->s[sc->i] == '+' || sc->s[sc->i] == '-'))
            sc->i++;
        bad = scan_digits(sc);
    }
    if (bad || sc->i != end)
        return fail_at(sc, start, "invalid number '%.*s%s'", shown, sc->s + start, dots);
    if (end - start > MAX_NUMBER_LEN)
        return fail_at(sc, start, "number too long (more than %d characters)", MAX_NUMBER_LEN);
    return 0;
}

static int scan_word(Scan *sc)
{
    size_t start = sc->i;
    while (sc->i < sc->n && is_word_char(sc->s[sc->i]))
        sc->i++;
    size_t len = sc->i - start;
    static const char *const words[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++)
        if (len == strlen(words[k]) && memcmp(sc->s + start, words[k], len) == 0)
            return 0;
    int shown = len > 24 ? 24 : (int)len;
    return fail_at(sc, start, "invalid value '%.*s%s' (expected a string, number, object, list, "
                   "true, false or null)", shown, sc->s + start, len > 24 ? "..." : "");
}

static int scan_value(Scan *sc, size_t key_off, int depth);

/* A list or an object: open is '[' or '{'. */
static int scan_container(Scan *sc, char open, int depth)
{
    char close = open == '[' ? ']' : '}';
    const char *seps = open == '[' ? "',' or ']'" : "',' or '}'";
    char buf[16];
    if (depth >= MAX_DEPTH)
        return fail_at(sc, sc->i, "nesting deeper than %d levels", MAX_DEPTH);
    sc->i++;
    skip_ws(sc);
    if (sc->i < sc->n && sc->s[sc->i] == close) {
        sc->i++;
        return 0;
    }
    for (;;) {
        skip_ws(sc);
        size_t key_off = sc->i;
        if (open == '{') {
            if (sc->i >= sc->n)
                return fail_eof(sc, "a key in double quotes");
            if (sc->s[sc->i] != '"') {
                if (sc->s[sc->i] == '\'')
                    return fail_at(sc, sc->i, "keys must be in double quotes, not single quotes");
                if (sc->s[sc->i] == '/')
                    return fail_at(sc, sc->i, "comments are not allowed in JSON");
                return fail_at(sc, sc->i, "expected a key in double quotes, got %s",
                               show_char(sc, sc->i, buf));
            }
            if (scan_string(sc) < 0)
                return -1;
            skip_ws(sc);
            if (sc->i >= sc->n)
                return fail_eof(sc, "':'");
            if (sc->s[sc->i] != ':')
                return fail_at(sc, sc->i, "expected ':' after the key, got %s",
                               show_char(sc, sc->i, buf));
            sc->i++;
        }
        if (scan_value(sc, key_off, depth + 1) < 0)
            return -1;
        skip_ws(sc);
        if (sc->i >= sc->n)
            return fail_eof(sc, seps);
        char c = sc->s[sc->i];
        if (c == close) {
            sc->i++;
            return 0;
        }
        if (c != ',')
            return fail_at(sc, sc->i, "expected %s, got %s", seps, show_char(sc, sc->i, buf));
        size_t comma = sc->i++;
        skip_ws(sc);
        if (sc->i < sc->n && sc->s[sc->i] == close)
            return fail_at(sc, comma, "trailing comma before '%c'", close);
    }
}

static int scan_value(Scan *sc, size_t key_off, int depth)
{
    char buf[16];
    skip_ws(sc);
    if (sc->i >= sc->n)
        return fail_eof(sc, "a value");
    if (key_off == (size_t)-1)
        key_off = sc->i;
    if (record(sc, key_off) < 0)
        return -1;
    char c = sc->s[sc->i];
    if (c == '{' || c == '[')
        return scan_container(sc, c, depth);
    if (c == '"')
        return scan_string(sc);
    if (c == '-' || is_digit(c))
        return scan_number(sc);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return scan_word(sc);
    if (c == '\'')
        return fail_at(sc, sc->i, "strings must be in double quotes, not single quotes");
    if (c == '/')
        return fail_at(sc, sc->i, "comments are not allowed in JSON");
    return fail_at(sc, sc->i, "expected a value, got %s", show_char(sc, sc->i, buf));
}

int kp_json_scan(KpJsonDoc *doc, KpArena *a, KpDiag *d)
{
    Scan sc = {.doc = doc, .a = a, .s = doc->text, .n = doc->len};
    char buf[16];
    doc->nvals = 0;
    if (sc.n >= 3 && memcmp(sc.s, "\xEF\xBB\xBF", 3) == 0)
        sc.i = 3;
    skip_ws(&sc);
    if (sc.i >= sc.n)
        return kp_error(d, "%s:1:1: empty file, expected a JSON object", doc->file);
    if (scan_value(&sc, (size_t)-1, 0) == 0) {
        skip_ws(&sc);
        if (sc.i < sc.n)
            fail_at(&sc, sc.i, "unexpected %s after the top-level value",
                    show_char(&sc, sc.i, buf));
    }
    if (!sc.failed)
        return 0;
    int line, col;
    kp_json_linecol(doc, sc.err_off, &line, &col);
    return kp_error(d, "%s:%d:%d: JSON syntax error: %s", doc->file, line, col, sc.err);
}
