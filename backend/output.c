/*
 * output.c — the module written out: LLVM IR text, assembly or an object,
 * to a file or, for the path "-", to stdout.
 *
 * Assembly and objects are emitted from a copy of the module: LLVM's code
 * generation passes rewrite the IR they run on, and the module may still
 * go to the JIT afterwards.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llvm_internal.h"

static int write_stdout(const char *data, size_t len, KpDiag *d)
{
    if (fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0)
        return kp_error(d, "<stdout>: write failed");
    return 0;
}

static int emit_llvm(KpCodegen *cg, const char *path, KpDiag *d)
{
    if (strcmp(path, "-") == 0) {
        char *text = LLVMPrintModuleToString(cg->mod);
        int rc = write_stdout(text, strlen(text), d);
        LLVMDisposeMessage(text);
        return rc;
    }
    char *msg = NULL;
    if (LLVMPrintModuleToFile(cg->mod, path, &msg)) {
        kp_error(d, "%s: cannot write: %s", path, msg ? msg : "?");
        LLVMDisposeMessage(msg);
        return -1;
    }
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
        char *p = strdup(path);   /* the C API takes a non-const path */
        if (!p)
            rc = kp_error(d, "out of memory");
        else if (LLVMTargetMachineEmitToFile(cg->tm, copy, p, type, &msg))
            rc = kp_error(d, "%s: cannot write: %s", path, msg ? msg : "?");
        free(p);
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
