/*
 * modelbuild.h — for the backend tests: a model file compiled the way
 * karpc does (frontend, passes, LLVM), then JIT-compiled and, if asked,
 * linked into a model.so and opened.
 *
 * A header of static functions, not a support .c file: those are linked
 * into every test program, and the runtime's tests link no compiler.
 */
#ifndef KP_MODELBUILD_H
#define KP_MODELBUILD_H

#include <check.h>
#include <stdio.h>
#include <unistd.h>

#include "backend/backend.h"
#include "include/karpc.h"
#include "testutil.h"

/* Write json to dir/<name>.json and build it into *prog; the JIT'd model
 * into *jit and, if so is not NULL, the model linked into dir/<name>.so
 * into *so.  Every failure is a test failure.  The caller closes both
 * models and frees *prog (kp_program_free).  po: the passes (NULL: their
 * defaults); target: the CPU and vector width to compile for
 * (kp_test_build_model: the host's). */
static inline void kp_test_build_model_po(const char *dir, const char *name, const char *json,
                                          const KpPassOpts *po, const KpTargetOpts *target,
                                          KpProgram *prog, karp_model **jit, karp_model **so)
{
    char path[512], obj[512], lib[512];
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    snprintf(obj, sizeof obj, "%s/%s.o", dir, name);
    snprintf(lib, sizeof lib, "%s/%s.so", dir, name);
    ck_assert_int_eq(kp_test_write_file(path, json), 0);
    KpDiag d;
    kp_diag_init(&d);
    ck_assert_msg(kp_build_program(path, po, 0, prog, &d) == 0, "%s\n%s", d.msg, json);
    KpTargetOpts t = *target;
    KpCodegen *cg = NULL;
    if (so) {   /* model.so as karpc -o builds it: objects of the partitions */
        ck_assert_msg(kp_llvm_codegen(prog, &t, &cg, &d) == 0, "%s\n%s", d.msg, json);
        int nobj = 0;
        ck_assert_msg(kp_llvm_write_objects(cg, obj, &nobj, &d) == 0, "%s", d.msg);
        kp_llvm_free(cg);
        char objs[KP_LLVM_MAX_PARTS][600];
        const char *objv[KP_LLVM_MAX_PARTS];
        for (int i = 0; i < nobj; i++) {
            snprintf(objs[i], sizeof objs[i], "%s.%d.o", obj, i);
            objv[i] = objs[i];
        }
        ck_assert_msg(kp_link_shared(objv, nobj, lib, NULL, &d) == 0, "%s", d.msg);
        for (int i = 0; i < nobj; i++)
            unlink(objs[i]);
    }
    ck_assert_msg(kp_llvm_codegen(prog, &t, &cg, &d) == 0, "%s\n%s", d.msg, json);
    ck_assert_msg(kp_llvm_jit(cg, jit, &d) == 0, "%s", d.msg);
    kp_llvm_free(cg);
    if (so) {
        karp_error err;
        *so = karp_open(lib, &err);
        ck_assert_msg(*so != NULL, "%s", err.message);
    }
}

/* The same with the passes' defaults. */
static inline void kp_test_build_model_for(const char *dir, const char *name, const char *json,
                                           const KpTargetOpts *target, KpProgram *prog,
                                           karp_model **jit, karp_model **so)
{
    kp_test_build_model_po(dir, name, json, NULL, target, prog, jit, so);
}

static inline void kp_test_build_model(const char *dir, const char *name, const char *json,
                                       int opt_level, KpProgram *prog, karp_model **jit,
                                       karp_model **so)
{
    KpTargetOpts t = {.opt_level = opt_level};
    kp_test_build_model_for(dir, name, json, &t, prog, jit, so);
}

#endif
