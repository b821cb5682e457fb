"""karpc against PyTorch on the same models, batch sizes and thread counts,
in one run; writes RESULTS.md.  Run through compare.sh, which sets up
PyTorch's environment (docs/bench.md, "karpc against PyTorch").

For every model, batch and thread count, in rounds, karpc and PyTorch run
back to back (so both see the same load):

  karpc    karpc bench MODEL --batch B --threads T --no-kernels --json
           (train_step and infer, each the median of its calls after warm-up)
  PyTorch  torch_models.py MODEL --batch B --threads T
           (zero_grad + forward + loss + backward + step, median per step)

A figure is the median over the rounds of each round's median; the ratio
is PyTorch's time over karpc's (above 1: karpc is faster).  Then the MLP's
infer at batch 1 in both, and the compile time of every example as
`karpc MODEL --stats -O2` reports it (JIT, the median of three).
"""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = ["fashion_mlp", "fashion_cnn", "keras_cnn", "resnet_cifar"]
TRAIN_TARGET = {64: 2.0, 1: 5.0}    # PyTorch time / karpc time, at 2 threads
INFER_TARGET_US = 3.0               # MLP infer at batch 1
COMPILE_TARGET_S = 1.0


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"compare.py: {' '.join(cmd)} failed:\n{p.stderr}")
    return p.stdout


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def karpc_run(karpc, model, batch, threads):
    """The entries' median seconds, the machine block, and for the per-round
    columns where the cores sat (a cache line's round trip at the start and
    end) and the share of steps the runtime ran on one thread (runtime/adapt.h)."""
    doc = json.loads(run([karpc, "bench", model, "--batch", str(batch), "--threads", str(threads),
                          "--no-kernels", "--json"]))
    whole = {g["entry"]: g["whole"]["median_s"] for g in doc["graphs"]}
    mc = doc["machine"]

    def one_thread(entry):
        w = next((g["whole"] for g in doc["graphs"] if g["entry"] == entry), {})
        return ("%.0f%%" % (100.0 * w["one_thread_calls"] / w["calls"])
                if "one_thread_calls" in w and w.get("calls") else "-")

    placement = {
        "cores": "/".join("%.0f" % mc[k] if k in mc else "?"
                          for k in ("round_trip_ns_start", "round_trip_ns_end")),
        "one": one_thread("train_step"),
        "one_infer": one_thread("infer"),
    }
    return whole, mc, placement


def torch_run(model, batch, threads, infer):
    cmd = [sys.executable, os.path.join(HERE, "torch_models.py"), model, "--batch", str(batch),
           "--threads", str(threads)] + (["--infer"] if infer else [])
    return json.loads(run(cmd))


def compile_seconds(karpc, model):
    times = []
    for _ in range(3):
        out = run([karpc, model, "--stats", "-O2"])
        m = re.search(r"\(total ([0-9.]+) ms", out)
        times.append(float(m.group(1)) / 1e3)
    return statistics.median(times)


def lscpu(field):
    for line in run(["lscpu"]).splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return "?"


def fmt_time(s):
    return f"{s * 1e3:.3f} ms" if s >= 1e-3 else f"{s * 1e6:.2f} us"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--karpc", default=os.path.join(ROOT, "build", "karpc"))
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="64,1")
    ap.add_argument("--threads", default="1,2")
    a = ap.parse_args()
    models = a.models.split(",")
    batches = [int(b) for b in a.batches.split(",")]
    threads = [int(t) for t in a.threads.split(",")]
    path = {m: os.path.join(ROOT, "examples", m + ".json") for m in models}

    start = datetime.datetime.now(datetime.timezone.utc)
    load_start = loadavg()
    rows, machine, torch_info = {}, {}, {}
    for r in range(a.rounds):
        for m in models:
            for b in batches:
                for t in threads:
                    infer = m == "fashion_mlp" and b == 1
                    k, mc, place = karpc_run(a.karpc, path[m], b, t)
                    pt = torch_run(path[m], b, t, infer)
                    machine[t] = mc
                    torch_info = pt
                    row = rows.setdefault((m, b, t), {"k": [], "p": [], "ki": [], "pi": [],
                                                      "load": [], "cores": [], "one": [],
                                                      "one_infer": []})
                    row["k"].append(k["train_step"])
                    row["p"].append(pt["train_step"]["median_s"])
                    row["load"].append(loadavg())
                    row["cores"].append(place["cores"])
                    row["one"].append(place["one"])
                    if infer:
                        row["one_infer"].append(place["one_infer"])
                        row["ki"].append(k["infer"])
                        row["pi"].append(pt["infer"]["median_s"])
                    print(f"round {r + 1}: {m} batch {b} threads {t}: karpc {fmt_time(k['train_step'])}"
                          f", PyTorch {fmt_time(pt['train_step']['median_s'])}, load {loadavg()}",
                          file=sys.stderr)
    compiles = {m: compile_seconds(a.karpc, path[m]) for m in models}
    load_end = loadavg()
    write_report(a, rows, machine, torch_info, compiles, models, batches, threads,
                 start, load_start, load_end)


def versions(karpc, torch_info):
    llvm = "?"
    for cfg in ("llvm-config-19", "llvm-config"):
        try:
            llvm = run([cfg, "--version"]).strip()
            break
        except (FileNotFoundError, SystemExit):
            continue
    return (f"{run([karpc, '--version']).strip()} (LLVM {llvm}); PyTorch {torch_info.get('torch', '?')}"
            f" with {', '.join(torch_info.get('blas', [])) or 'no BLAS library mapped'}")


def write_report(a, rows, machine, torch_info, compiles, models, batches, threads, start,
                 load_start, load_end):
    med = statistics.median
    lines = ["# karpc against PyTorch", "",
             "Written by `bench/compare.sh` (docs/bench.md explains the method); re-run it after "
             "changing the kernels.", "",
             f"- date: {start:%Y-%m-%d %H:%M} UTC; load average {load_start} at the start, "
             f"{load_end} at the end (the machine is shared: other builds and tests run beside)",
             f"- machine: {lscpu('Model name')}, {lscpu('CPU(s)')} cores"]
    for t in sorted(machine):
        mc = machine[t]
        lines.append(f"- measured at {t} thread{'s' if t > 1 else ''}: FP32 peak "
                     f"{mc['peak_gflops']:.0f} GFLOP/s ({mc['peak_lanes']} lanes), memory "
                     f"{mc['triad_gbs']:.1f} GB/s triad, {mc['copy_gbs']:.1f} GB/s copy")
    lines += [f"- versions: {versions(a.karpc, torch_info)}",
              f"- rounds: {a.rounds}; a figure is the median over the rounds of each round's "
              "median per call", "",
              "## train_step", "",
              "per round: PyTorch / karpc in each round; load: the 1-minute load average after "
              "each round's pair of runs (the pair's own threads count in it; well above the core "
              "count, the 2-thread figures are noise: PyTorch's OpenMP team waits for its "
              "descheduled threads, karpc's for a piece a descheduled thread has begun; other "
              "guests on the host do not show in it, only in the spread of the rounds). "
              "round trip: a cache line between the first two cores and back at the start and the "
              "end of karpc's run, in ns (about 60: one core complex, a shared L3; about 340: two, "
              "none shared; the host moves the guest's cores between the two every few seconds). "
              "1 thread: the share of karpc's timed steps the runtime ran on one thread because two "
              "measured slower then (docs/abi.md, \"Adaptive thread count\").", "",
              "| model | batch | threads | karpc | PyTorch | PyTorch / karpc | target | met | per round | load | round trip | 1 thread |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        for b in batches:
            for t in threads:
                row = rows[(m, b, t)]
                k, p = med(row["k"]), med(row["p"])
                target = TRAIN_TARGET.get(b) if t == 2 else None
                met = "-" if target is None else ("yes" if p / k >= target else "**no**")
                load = ", ".join(x.split()[0] for x in row["load"])
                each = ", ".join(f"{pp / kk:.2f}" for kk, pp in zip(row["k"], row["p"]))
                cores = ", ".join(row["cores"]) if t > 1 else "-"
                one = ", ".join(row["one"]) if t > 1 else "-"
                lines.append(f"| {m} | {b} | {t} | {fmt_time(k)} | {fmt_time(p)} | {p / k:.2f} | "
                             f"{'>= %gx' % target if target else '-'} | {met} | {each} | {load} | "
                             f"{cores} | {one} |")
    lines += ["", "## infer, fashion_mlp, batch 1", "",
              "round trip and 1 thread as above, for karp_infer's calls (its thread count adapts "
              "as train_step's does).", "",
              "| threads | karpc | PyTorch | PyTorch / karpc | target | met | karpc per round | round trip | 1 thread |",
              "|---|---|---|---|---|---|---|---|---|"]
    for t in threads:
        row = rows.get(("fashion_mlp", 1, t))
        if not row or not row["ki"]:
            continue
        k, p = med(row["ki"]), med(row["pi"])
        each = ", ".join(fmt_time(x) for x in row["ki"])
        cores = ", ".join(row["cores"]) if t > 1 else "-"
        one = ", ".join(row["one_infer"]) if t > 1 else "-"
        lines.append(f"| {t} | {fmt_time(k)} | {fmt_time(p)} | {p / k:.1f} | < {INFER_TARGET_US:g} us | "
                     f"{'yes' if k * 1e6 < INFER_TARGET_US else '**no**'} | {each} | {cores} | {one} |")
    lines += ["", "## compile time (JIT, -O2, `karpc MODEL --stats -O2`, median of 3)", "",
              "| model | seconds | target | met |", "|---|---|---|---|"]
    for m in models:
        lines.append(f"| {m} | {compiles[m]:.3f} | < {COMPILE_TARGET_S:g} s | "
                     f"{'yes' if compiles[m] < COMPILE_TARGET_S else '**no**'} |")
    lines += ["", "## set-up", "",
              "- karpc: `karpc bench MODEL --batch B --threads T --no-kernels --json`: the model "
              "compiled for max batch B (-O3, as karp_compile), one seeded batch, the median of "
              "karp_train_step / karp_infer calls after 13 warm-up calls.",
              "- PyTorch: `bench/torch_models.py`, the network built from the same model file by "
              "tests/oracle/karp_torch.py, the file's loss and optimizer; median per step of "
              "zero_grad + forward + loss + backward + optimizer.step after 10 warm-up steps; "
              "infer under torch.inference_mode() in eval mode.",
              "- PyTorch's fair set-up: torch.set_num_threads(T); LD_LIBRARY_PATH="
              "/usr/lib/x86_64-linux-gnu/openblas-openmp (the OpenMP OpenBLAS, not the pthread one "
              "that fights PyTorch's OpenMP threads); GLIBC_TUNABLES=glibc.malloc.mmap_threshold="
              "33554432:glibc.malloc.trim_threshold=1073741824 (large activation buffers stay in "
              "the heap instead of being mapped and faulted in again every step; 32 MiB is glibc's "
              "largest mmap threshold). karpc runs under the same environment.",
              "- Each (model, batch, threads) runs karpc then PyTorch back to back, in every round."]
    text = "\n".join(lines) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
