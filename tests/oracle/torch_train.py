"""PyTorch oracle for karpc's training: rebuild a model file's network in
PyTorch, load the initial weights karpc saved (safetensors, read by hand so
that no extra package is needed), run the same batches through the same
loss and optimizer, print one loss per line.

    torch_train.py MODEL.json INIT.safetensors BATCHES.bin STEPS

BATCHES.bin holds, per step, n as int32, then n*input float32 samples,
then the target: n int32 labels (cross_entropy) or n*output float32.
"""
import json
import struct
import sys

import numpy as np
import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen])
    data = blob[8 + hlen:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors


ACTS = {
    "relu": torch.nn.ReLU,
    "sigmoid": torch.nn.Sigmoid,
    "tanh": torch.nn.Tanh,
    "softmax": lambda: torch.nn.Softmax(dim=1),
}


def activation(name, alpha=0.01):
    if name == "leaky_relu":
        return torch.nn.LeakyReLU(alpha)
    return ACTS[name]()


def build(model):
    """A chain model as nn.Sequential, with modules named as karpc names
    the parameters (<layer>.weight)."""
    seq = torch.nn.Sequential()
    numel = int(np.prod(model["input"]["shape"]))
    for i, layer in enumerate(model["layers"]):
        kind = layer["type"]
        name = layer.get("name", f"{kind}{i}")
        if kind == "flatten":
            seq.add_module(name, torch.nn.Flatten())
        elif kind == "dense":
            seq.add_module(name, torch.nn.Linear(numel, layer["units"], bias=layer.get("bias", True)))
            numel = layer["units"]
            act = layer.get("activation", "none")
            if act != "none":
                seq.add_module(name + "_act", activation(act))
        elif kind == "leaky_relu":
            seq.add_module(name, activation(kind, layer.get("alpha", 0.01)))
        elif kind in ACTS:
            seq.add_module(name, activation(kind))
        else:
            raise SystemExit(f"torch_train.py: layer type {kind} not supported here")
    return seq, numel


def make_loss(name):
    return {
        "cross_entropy": torch.nn.CrossEntropyLoss(),
        "mse": torch.nn.MSELoss(),
        "bce": torch.nn.BCELoss(),
        "bce_logits": torch.nn.BCEWithLogitsLoss(),
    }[name]


def make_optimizer(spec, params):
    kind, lr = spec["type"], spec["lr"]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=spec.get("weight_decay", 0.0))
    if kind == "momentum":
        beta = spec.get("beta", 0.9)
        opt = torch.optim.SGD(params, lr=lr, momentum=beta, dampening=beta)
        # karpc's v starts at zero (v = beta v + (1-beta) g from the first
        # step); PyTorch starts the buffer at g unless it already exists.
        for p in params:
            opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return opt
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(spec.get("beta1", 0.9), spec.get("beta2", 0.999)),
                                eps=spec.get("eps", 1e-8))
    raise SystemExit(f"torch_train.py: optimizer {kind} not supported")


def main():
    model_path, init_path, batches_path, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with open(model_path) as f:
        model = json.load(f)
    torch.set_num_threads(1)
    net, out_size = build(model)
    state = read_safetensors(init_path)
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("optimizer.")})
    loss_name = model["loss"] if isinstance(model["loss"], str) else model["loss"]["type"]
    loss_fn = make_loss(loss_name)
    params = list(net.parameters())
    opt = make_optimizer(model["optimizer"], params)
    in_size = int(np.prod(model["input"]["shape"]))
    with open(batches_path, "rb") as f:
        blob = f.read()
    pos = 0
    for _ in range(steps):
        (n,) = struct.unpack_from("<i", blob, pos)
        pos += 4
        x = np.frombuffer(blob, dtype="<f4", count=n * in_size, offset=pos).reshape([n] + model["input"]["shape"])
        pos += 4 * n * in_size
        if loss_name == "cross_entropy":
            t = torch.from_numpy(np.frombuffer(blob, dtype="<i4", count=n, offset=pos).astype(np.int64))
            pos += 4 * n
        else:
            t = torch.from_numpy(np.frombuffer(blob, dtype="<f4", count=n * out_size, offset=pos).reshape(n, out_size).copy())
            pos += 4 * n * out_size
        opt.zero_grad()
        loss = loss_fn(net(torch.from_numpy(x.copy())), t)
        loss.backward()
        opt.step()
        print(f"{loss.item():.9g}")


if __name__ == "__main__":
    main()
