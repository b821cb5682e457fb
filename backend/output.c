/*
 * output.c — the module written out: LLVM IR text, assembly or an object,
 * to a file (written whole or not at all: runtime/atomic_file.h) or, for
 * the path "-", to stdout.
 *
 * Assembly and objects are emitted from a copy of the module: LLVM's code
 * generation passes rewrite the IR they run on, and the module may still
 * go to the JIT afterwards.
 */
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

/* A temporary file for LLVM to write by name (runtime/atomic_file.h):
 * the output is renamed into place whole, or not at all. */
static int begin_named(KpAtomic *af, const char *path)
{
    int err = kp_atomic_begin(af, path);
    if (!err) {
        close(af->fd);
        af->fd = -1;
    }
    return err;
}

static int emit_llvm(KpCodegen *cg, const char *path, KpDiag *d)
{
    if (strcmp(path, "-") == 0) {
        char *text = LLVMPrintModuleToString(cg->mod);
        int rc = write_stdout(text, strlen(text), d);
        LLVMDisposeMessage(text);
        return rc;
    }
    KpAtomic af;
    int err = begin_named(&af, path);
    if (err)
        return kp_error(d, "%s: cannot write: %s", path, strerror(err));
    char *msg = NULL;
    if (LLVMPrintModuleToFile(cg->mod, af.tmp, &msg)) {
        kp_atomic_abort(&af);
        kp_error(d, "%s: cannot write: %s", path, msg ? msg : "?");
        LLVMDisposeMessage(msg);
        return -1;
    }
    err = kp_atomic_commit(&af, 0);
    if (err)
        return kp_error(d, "%s: cannot write: %s", path, strerror(err));
    return 0;
}

static int emit_machine(KpCodegen *cg, LLVMCodeGenFileType type, const char *path, KpDiag *d)
{
    LLVMModuleRef copy = LLVMCloneModule(cg->mod);
    char *msg = NULL;
    int rc = 0;
    if (strcmp(path, "-") == 0) {
        LLVMMemoryBufferRef buf = NULL;
        if (LLVMTargetMachineEmitToMemoryBuffer(cg->tm, copy, type, &msg, &buf)) {
            rc = kp_error(d, "code generation failed: %s", msg ? msg : "?");
        } else {
            rc = write_stdout(LLVMGetBufferStart(buf), LLVMGetBufferSize(buf), d);
            LLVMDisposeMemoryBuffer(buf);
        }
    } else {
        KpAtomic af;
        int err = begin_named(&af, path);
        if (err) {
            rc = kp_error(d, "%s: cannot write: %s", path, strerror(err));
        } else if (LLVMTargetMachineEmitToFile(cg->tm, copy, af.tmp, type, &msg)) {
            kp_atomic_abort(&af);
            rc = kp_error(d, "%s: cannot write: %s", path, msg ? msg : "?");
        } else if ((err = kp_atomic_commit(&af, 0)) != 0) {
            rc = kp_error(d, "%s: cannot write: %s", path, strerror(err));
        }
    }
    LLVMDisposeMessage(msg);
    LLVMDisposeModule(copy);
    return rc;
}

int kp_llvm_emit_file(KpCodegen *cg, KpEmitKind kind, const char *path, KpDiag *d)
{
    if (!cg || !cg->mod)
        return kp_error(d, "internal error: no module to emit (already given to the JIT?)");
    if (kind == KP_EMIT_LLVM)
        return emit_llvm(cg, path, d);
    return emit_machine(cg, kind == KP_EMIT_ASM ? LLVMAssemblyFile : LLVMObjectFile, path, d);
}
