"""PyTorch oracle for karpc's training: rebuild a model file's network in
PyTorch (karp_torch.py), load the initial weights karpc saved, run the same
batches through the same loss and optimizer.

    torch_train.py MODEL.json INIT.safetensors BATCHES.bin STEPS
        prints one loss per step, one per line
    torch_train.py --trace MODEL.json INIT.safetensors BATCHES.bin STEPS OUT.bin
        computes in float64 (from the same float32 weights and batches, so
        that the reference carries no float32 rounding of its own) and
        writes, for each step k (1-based), the records
          s<k>.output        the forward output in training mode [n, output]
          s<k>.loss          the mean loss [1]
          s<k>.dx            the gradient of the loss with respect to the input
          s<k>.grad.<param>  each trained parameter's gradient
          s<k>.<stat>        each batchnorm running statistic after the forward
        then final.<param> for every parameter after the last update.
        A record is: u32 name length, the name, u64 count, count float32
        (little-endian).

BATCHES.bin holds, per step, n as int32, then n*input float32 samples,
then the target: n int32 labels (cross_entropy) or n*output float32.
"""
import json
import struct
import sys

import numpy as np
import torch

import karp_torch as kt


def record(f, name, t):
    data = t.detach().reshape(-1).to(torch.float32).numpy().astype("<f4")
    raw = name.encode()
    f.write(struct.pack("<I", len(raw)))
    f.write(raw)
    f.write(struct.pack("<Q", data.size))
    f.write(data.tobytes())


def main():
    args = sys.argv[1:]
    trace = args[:1] == ["--trace"]
    if trace:
        args = args[1:]
    if len(args) != (5 if trace else 4):
        raise SystemExit(__doc__)
    model_path, init_path, batches_path, steps = args[0], args[1], args[2], int(args[3])
    with open(model_path) as f:
        model = json.load(f)
    torch.set_num_threads(1)
    net = kt.KarpNet(model)
    net.load_karp(kt.read_safetensors(init_path))
    if trace:
        net.double()  # the reference: float64 from the same float32 weights
    net.train()
    loss_fn = kt.make_loss(kt.loss_name(model))
    trained = net.trainable()
    opt = kt.make_optimizer(model["optimizer"], [p for _, p in trained])
    out_size = int(np.prod(net.out_shape))
    batches = kt.read_batches(batches_path, model, out_size, steps)
    out = open(args[4], "wb") if trace else None
    for k, (x, t) in enumerate(batches, 1):
        if trace:
            x = x.double()
            if t.dtype == torch.float32:
                t = t.double()
        opt.zero_grad()
        x.requires_grad_(trace)
        y = net(x)
        loss = loss_fn(y, t)
        loss.backward()
        if out:
            record(out, f"s{k}.output", y)
            record(out, f"s{k}.loss", loss.reshape(1))
            record(out, f"s{k}.dx", x.grad)
            for name, p in trained:
                record(out, f"s{k}.grad.{name}", p.grad)
            for name, t in net.statistics():
                record(out, f"s{k}.{name}", t)
        else:
            print(f"{loss.item():.9g}")
        opt.step()
    if out:
        for name in net.named:
            record(out, f"final.{name}", net.tensor(name))
        out.close()


if __name__ == "__main__":
    main()
