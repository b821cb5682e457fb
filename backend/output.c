/*
 * output.c — the module written out: LLVM IR text, assembly or an object,
 * to a file (written whole or not at all: runtime/atomic_file.h) or, for
 * the path "-", to stdout.
 *
 * kp_llvm_write_objects writes the objects of the parallel partitions
 * (partition.c) that model.so is linked from; --emit=llvm|asm|obj
 * print the whole module, optimized as one.
 *
 * Assembly and objects are emitted from a copy of the module: LLVM's code
 * generation passes rewrite the IR they run on, and the module may still
 * go to the JIT afterwards.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../runtime/atomic_file.h"
#include "llvm_internal.h"

static int write_stdout(const char *data, size_t len, KpDiag *d)
{
    if (fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0)
        return kp_error(d, "<stdout>: write failed");
    return 0;
}

/* data to path, whole or not at all (runtime/atomic_file.h).  LLVM's own
 * file streams are not used: on a failed write they abort the process
 * ("LLVM ERROR: IO failure") and leave the file behind. */
static int write_file(const char *path, const char *data, size_t len, KpDiag *d)
{
    if (strcmp(path, "-") == 0)
        return write_stdout(data, len, d);
    KpAtomic af;
    int err = kp_atomic_begin(&af, path);
    while (!err && len > 0) {
        ssize_t w = write(af.fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err = w < 0 ? errno : EIO;
            kp_atomic_abort(&af);
            break;
        }
        data += w;
        len -= (size_t)w;
    }
    if (!err)
        err = kp_atomic_commit(&af, 0);
    return err ? kp_error(d, "%s: cannot write: %s", path, strerror(err)) : 0;
}

static int emit_llvm(KpCodegen *cg, const char *path, KpDiag *d)
{
    char *text = LLVMPrintModuleToString(cg->mod);
    int rc = write_file(path, text, strlen(text), d);
    LLVMDisposeMessage(text);
    return rc;
}

static int emit_machine(KpCodegen *cg, LLVMCodeGenFileType type, const char *path, KpDiag *d)
{
    LLVMModuleRef copy = LLVMCloneModule(cg->mod);
    char *msg = NULL;
    int rc = 0;
    LLVMMemoryBufferRef buf = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(cg->tm, copy, type, &msg, &buf)) {
        rc = kp_error(d, "code generation failed: %s", msg ? msg : "?");
    } else {
        rc = write_file(path, LLVMGetBufferStart(buf), LLVMGetBufferSize(buf), d);
        LLVMDisposeMemoryBuffer(buf);
    }
    LLVMDisposeMessage(msg);
    LLVMDisposeModule(copy);
    return rc;
}

int kp_llvm_emit_file(KpCodegen *cg, KpEmitKind kind, const char *path, KpDiag *d)
{
    if (!cg || !cg->mod)
        return kp_error(d, "internal error: no module to emit (already given to the JIT?)");
    if (kp_llvm_optimize(cg, d) < 0)
        return -1;
    if (kind == KP_EMIT_LLVM)
        return emit_llvm(cg, path, d);
    return emit_machine(cg, kind == KP_EMIT_ASM ? LLVMAssemblyFile : LLVMObjectFile, path, d);
}

int kp_llvm_write_objects(KpCodegen *cg, const char *stem, int *nobjs, KpDiag *d)
{
    LLVMMemoryBufferRef objs[KP_LLVM_MAX_PARTS];
    *nobjs = 0;
    int n = 0;
    if (kp_llvm_objects(cg, cg->jobs, objs, &n, d) < 0)
        return -1;
    int rc = 0;
    size_t cap = strlen(stem) + 16;
    char *path = malloc(cap);
    if (!path)
        rc = kp_error(d, "out of memory");
    for (int i = 0; i < n; i++) {
        if (rc == 0) {
            snprintf(path, cap, "%s.%d.o", stem, i);
            rc = write_file(path, LLVMGetBufferStart(objs[i]), LLVMGetBufferSize(objs[i]), d);
            if (rc == 0)
                *nobjs = i + 1;
        }
        LLVMDisposeMemoryBuffer(objs[i]);
    }
    free(path);
    return rc;
}
