"""The PyTorch side of bench/compare.sh: one model file's network in
PyTorch, timed the way karpc bench times karpc.

    torch_models.py MODEL.json --batch N --threads T [--infer] [--budget S]

builds the network from the model file with the oracle tests' translator
(tests/oracle/karp_torch.py: every layer type of the format, karpc's
padding rules and parameter shapes), the file's loss and optimizer with its
hyperparameters, and times on one seeded batch (uniform [0,1) inputs,
uniform labels or targets):

  train_step  zero_grad + forward + loss + backward + optimizer.step
  infer       (--infer) the forward in eval mode under torch.inference_mode()

each call timed alone after 10 warm-up calls, until S seconds (default 3)
or 2000 calls, at least 20.  Prints one JSON object: the medians and bests
in seconds, the thread count, the torch version and the BLAS library the
process loaded.  The fair set-up (thread count, OpenMP OpenBLAS, malloc
tunables) is compare.sh's: torch.set_num_threads(T) is set here.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "oracle"))
import karp_torch as kt  # noqa: E402


def timed(fn, budget, min_calls=20, max_calls=2000):
    for _ in range(10):
        fn()
    times, total = [], 0.0
    while len(times) < max_calls and (len(times) < min_calls or total < budget):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    return {"median_s": statistics.median(times), "best_s": min(times), "calls": len(times)}


def loaded_blas():
    """The BLAS shared objects mapped into this process."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "blas" in os.path.basename(path):
                libs.add(path)
    return sorted(libs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--infer", action="store_true")
    ap.add_argument("--budget", type=float, default=3.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    kt.TORCH_DROPOUT = True     # the same work, PyTorch's own masks
    torch.manual_seed(1)
    with open(a.model) as f:
        model = json.load(f)
    net = kt.KarpNet(model)
    out_size = int(np.prod(net.out_shape))
    x = torch.rand([a.batch] + list(model["input"]["shape"]))
    loss_kind = kt.loss_name(model)
    if loss_kind == "cross_entropy":
        target = torch.randint(0, out_size, (a.batch,))
    else:
        target = torch.rand(a.batch, out_size)
    loss_fn = kt.make_loss(loss_kind)
    opt = kt.make_optimizer(model["optimizer"], [p for _, p in net.trainable()])

    def step():
        opt.zero_grad()
        loss = loss_fn(net(x), target)
        loss.backward()
        opt.step()

    net.train()
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": a.batch,
              "train_step": timed(step, a.budget)}
    if a.infer:
        net.eval()

        def infer():
            with torch.inference_mode():
                net(x)

        result["infer"] = timed(infer, a.budget)
    result["blas"] = loaded_blas()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
