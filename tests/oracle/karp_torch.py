"""A karpc model file rebuilt as a PyTorch module, for the oracle tests.

Both forms of the file become one list of nodes (name, module, inputs) run
in order: the chain form's layer i reads layer i-1, the graph form's nodes
are sorted so that every node comes after its inputs.  Each node keeps
karpc's parameter names ("<layer>.weight", batchnorm's ".running_mean"),
so the initial weights karp_save wrote map onto the module one to one.

Padding follows karpc (ir/shape_conv.c): "same" is TensorFlow/Keras's
rule for every stride, total T = max((O-1)*S + E - I, 0) with O = ceil(I/S),
T/2 before and the rest after; uneven padding goes through F.pad ahead of
an unpadded conv.  Pools pad like PyTorch (max with -inf, average counting
the padding).
"""
import json
import struct

import numpy as np
import torch
import torch.nn.functional as F


# Timing only (bench/torch_models.py): dropout as PyTorch's own, whose
# masks differ from karpc's; the oracle tests keep it unsupported.
TORCH_DROPOUT = False

def read_safetensors(path):
    """name -> tensor for the F32 tensors of a safetensors file (read by
    hand: no extra package needed)."""
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


def activation(name, alpha=0.01):
    if name == "relu":
        return torch.nn.ReLU()
    if name == "sigmoid":
        return torch.nn.Sigmoid()
    if name == "tanh":
        return torch.nn.Tanh()
    if name == "softmax":
        return torch.nn.Softmax(dim=-1)
    if name == "leaky_relu":
        return torch.nn.LeakyReLU(alpha)
    raise SystemExit(f"karp_torch.py: unknown activation {name}")


def pair(v):
    return (v, v) if isinstance(v, (int, float)) else (v[0], v[1])


def window_padding(size, kernel, stride, dilation, padding):
    """Per axis (before, after) padding and the output size, as karpc."""
    eff = dilation * (kernel - 1) + 1
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + eff - size, 0)
        return (total // 2, total - total // 2), out
    p = 0 if padding == "valid" else padding
    return (p, p), (size + 2 * p - eff) // stride + 1


class Padded(torch.nn.Module):
    """F.pad ahead of a module (karpc's uneven "same")."""

    def __init__(self, core, pads):
        super().__init__()
        self.core = core
        self.pads = pads  # (left, right, top, bottom), F.pad's order

    def forward(self, x):
        return self.core(F.pad(x, self.pads))


class Masking(torch.nn.Module):
    """Keras Masking on rank-1 samples: a sample whose features all equal
    value becomes zero."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        keep = (x != self.value).any(dim=1, keepdim=True)
        return x * keep.to(x.dtype)


def params(mod, *attrs):
    """karpc suffix -> (module, attribute) for the attributes mod has
    (looked up when used: Module.double() replaces buffers)."""
    return {a: (mod, a) for a in attrs if getattr(mod, a) is not None}


def conv2d(layer, shape):
    c, h, w = shape
    kh, kw = pair(layer["kernel"])
    sh, sw = pair(layer.get("stride", 1))
    dh, dw = pair(layer.get("dilation", 1))
    padding = layer.get("padding", 0)
    ph, pw = (padding, padding) if isinstance(padding, str) else pair(padding)
    (pt, pb), oh = window_padding(h, kh, sh, dh, ph)
    (pl, pr), ow = window_padding(w, kw, sw, dw, pw)
    even = pt == pb and pl == pr
    conv = torch.nn.Conv2d(c, layer["filters"], (kh, kw), stride=(sh, sw),
                           padding=(pt, pl) if even else 0, dilation=(dh, dw),
                           bias=layer.get("bias", True))
    mod = conv if even else Padded(conv, (pl, pr, pt, pb))
    return mod, params(conv, "weight", "bias"), [layer["filters"], oh, ow]


def transpose_padding(size, kernel, stride, dilation, padding, output_padding):
    """(padding, output_padding, rows to drop at the end, output size).
    "same" is TensorFlow's: output size*stride, the full output losing
    floor(T/2) rows at the top and the rest at the bottom, T = E - stride;
    an odd T has no ConvTranspose2d form, so one more row is dropped after."""
    eff = dilation * (kernel - 1) + 1
    if padding == "same":
        total = eff - stride
        if total <= 0:
            return 0, -total, 0, size * stride
        return total // 2, 0, total % 2, size * stride
    p = 0 if padding == "valid" else padding
    return p, output_padding, 0, (size - 1) * stride - 2 * p + eff + output_padding


class Cropped(torch.nn.Module):
    """Drop the last rows and columns of a module's output (TensorFlow's
    uneven transposed "same")."""

    def __init__(self, core, drop_h, drop_w):
        super().__init__()
        self.core = core
        self.drop_h, self.drop_w = drop_h, drop_w

    def forward(self, x):
        y = self.core(x)
        return y[:, :, :y.shape[2] - self.drop_h, :y.shape[3] - self.drop_w]


def conv2d_transpose(layer, shape):
    c, h, w = shape
    kh, kw = pair(layer["kernel"])
    sh, sw = pair(layer.get("stride", 1))
    padding = layer.get("padding", 0)
    ph, pw = (padding, padding) if isinstance(padding, str) else pair(padding)
    oph, opw = pair(layer.get("output_padding", 0))
    ph, oph, drop_h, oh = transpose_padding(h, kh, sh, 1, ph, oph)
    pw, opw, drop_w, ow = transpose_padding(w, kw, sw, 1, pw, opw)
    conv = torch.nn.ConvTranspose2d(c, layer["filters"], (kh, kw), stride=(sh, sw),
                                    padding=(ph, pw), output_padding=(oph, opw),
                                    bias=layer.get("bias", True))
    mod = Cropped(conv, drop_h, drop_w) if drop_h or drop_w else conv
    return mod, params(conv, "weight", "bias"), [layer["filters"], oh, ow]


def pool2d(layer, shape):
    c, h, w = shape
    kh, kw = pair(layer["size"])
    sh, sw = pair(layer.get("stride", layer["size"]))
    ph, pw = pair(layer.get("padding", 0))
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    if layer["type"] == "maxpool2d":
        mod = torch.nn.MaxPool2d((kh, kw), stride=(sh, sw), padding=(ph, pw))
    else:
        mod = torch.nn.AvgPool2d((kh, kw), stride=(sh, sw), padding=(ph, pw), count_include_pad=True)
    return mod, {}, [c, oh, ow]


def batchnorm(layer, shape):
    kind = torch.nn.BatchNorm1d if len(shape) == 1 else torch.nn.BatchNorm2d
    if len(shape) not in (1, 3):
        raise SystemExit("karp_torch.py: batchnorm needs rank-1 or rank-3 samples")
    bn = kind(shape[0], eps=layer.get("eps", 1e-5), momentum=layer.get("momentum", 0.1))
    return bn, params(bn, "weight", "bias", "running_mean", "running_var"), list(shape)


def dense(layer, shape):
    if len(shape) != 1:
        raise SystemExit("karp_torch.py: dense needs rank-1 samples")
    lin = torch.nn.Linear(shape[0], layer["units"], bias=layer.get("bias", True))
    return lin, params(lin, "weight", "bias"), [layer["units"]]


def reshape(layer, shape):
    dims = list(layer["shape"])
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        dims[dims.index(-1)] = int(np.prod(shape)) // known
    return torch.nn.Unflatten(1, dims), {}, dims


def one_input(layer, shape):
    """The module, its parameters by karpc suffix, the output shape."""
    kind = layer["type"]
    if kind == "dense":
        return dense(layer, shape)
    if kind == "conv2d":
        return conv2d(layer, shape)
    if kind == "conv2d_transpose":
        return conv2d_transpose(layer, shape)
    if kind in ("maxpool2d", "avgpool2d"):
        return pool2d(layer, shape)
    if kind == "batchnorm":
        return batchnorm(layer, shape)
    if kind == "masking":
        return Masking(layer.get("value", 0.0)), {}, list(shape)
    if kind == "flatten":
        return torch.nn.Flatten(), {}, [int(np.prod(shape))]
    if kind == "reshape":
        return reshape(layer, shape)
    if kind == "dropout":
        if layer["rate"] == 0:
            return torch.nn.Identity(), {}, list(shape)
        if TORCH_DROPOUT:
            return torch.nn.Dropout(layer["rate"]), {}, list(shape)
        raise SystemExit("karp_torch.py: dropout draws karpc's own mask; not supported here")
    if kind in ("relu", "sigmoid", "tanh", "softmax", "leaky_relu"):
        return activation(kind, layer.get("alpha", 0.01)), {}, list(shape)
    raise SystemExit(f"karp_torch.py: layer type {kind} not supported here")


def node_list(model):
    """[(name, layer, input names)] in an order where inputs come first."""
    if "layers" in model:
        nodes, prev = [], "input"
        for i, layer in enumerate(model["layers"]):
            name = layer.get("name", f"{layer['type']}{i}")
            nodes.append((name, layer, [prev]))
            prev = name
        return nodes, prev
    pending = {n["name"]: n for n in model["nodes"]}
    done, nodes = {"input"}, []
    while pending:
        ready = [n for n in pending.values()
                 if all(i in done for i in n.get("inputs", [n.get("input")]))]
        if not ready:
            raise SystemExit("karp_torch.py: the graph has a cycle or a missing input")
        for n in ready:
            nodes.append((n["name"], n, n.get("inputs", [n.get("input")])))
            done.add(n["name"])
            del pending[n["name"]]
    return nodes, model["output"]


class KarpNet(torch.nn.Module):
    """The model file's network.  self.named holds karpc's parameter and
    running-statistic names -> (module, attribute); tensor(name) is the
    tensor now."""

    def __init__(self, model):
        super().__init__()
        nodes, self.output = node_list(model)
        shapes = {"input": list(model["input"]["shape"])}
        self.mods = torch.nn.ModuleDict()
        self.order = []
        self.named = {}
        for name, layer, inputs in nodes:
            kind = layer["type"]
            if kind == "add":
                shapes[name] = shapes[inputs[0]]
            elif kind == "concat":
                axis = layer.get("axis", 0)
                out = list(shapes[inputs[0]])
                out[axis] = sum(shapes[i][axis] for i in inputs)
                shapes[name] = out
            else:
                mod, params, shapes[name] = one_input(layer, shapes[inputs[0]])
                act = layer.get("activation", "none")
                if act != "none":
                    mod = torch.nn.Sequential(mod, activation(act))
                self.mods[name] = mod
                for suffix, where in params.items():
                    self.named[f"{name}.{suffix}"] = where
            self.order.append((name, kind, layer, inputs))
        self.out_shape = shapes[self.output]

    def forward(self, x):
        vals = {"input": x}
        for name, kind, layer, inputs in self.order:
            xs = [vals[i] for i in inputs]
            if kind == "add":
                y = xs[0]
                for t in xs[1:]:
                    y = y + t
            elif kind == "concat":
                y = torch.cat(xs, dim=layer.get("axis", 0) + 1)
            else:
                y = self.mods[name](xs[0])
            vals[name] = y
        return vals[self.output]

    def tensor(self, name):
        mod, attr = self.named[name]
        return getattr(mod, attr)

    def load_karp(self, state):
        """Copy karpc's saved tensors in; every name must be there."""
        with torch.no_grad():
            for name in self.named:
                t = self.tensor(name)
                if name not in state:
                    raise SystemExit(f"karp_torch.py: {name} is not in the saved weights")
                if tuple(state[name].shape) != tuple(t.shape):
                    raise SystemExit(f"karp_torch.py: {name} is {tuple(state[name].shape)}, "
                                     f"expected {tuple(t.shape)}")
                t.copy_(state[name])

    def trainable(self):
        """(karpc name, parameter) of the trained tensors, in file order."""
        return [(n, self.tensor(n)) for n in self.named
                if isinstance(self.tensor(n), torch.nn.Parameter)]

    def statistics(self):
        """(karpc name, tensor) of the running statistics."""
        return [(n, self.tensor(n)) for n in self.named
                if not isinstance(self.tensor(n), torch.nn.Parameter)]


def loss_name(model):
    return model["loss"] if isinstance(model["loss"], str) else model["loss"]["type"]


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
    raise SystemExit(f"karp_torch.py: optimizer {kind} not supported")


def read_batches(path, model, out_size, steps):
    """The steps' (x, target) from BATCHES.bin (see torch_train.py)."""
    with open(path, "rb") as f:
        blob = f.read()
    in_shape = list(model["input"]["shape"])
    in_size = int(np.prod(in_shape))
    labels = loss_name(model) == "cross_entropy"
    pos, out = 0, []
    for _ in range(steps):
        (n,) = struct.unpack_from("<i", blob, pos)
        pos += 4
        x = np.frombuffer(blob, dtype="<f4", count=n * in_size, offset=pos).reshape([n] + in_shape)
        pos += 4 * n * in_size
        if labels:
            t = torch.from_numpy(np.frombuffer(blob, dtype="<i4", count=n, offset=pos).astype(np.int64))
            pos += 4 * n
        else:
            t = np.frombuffer(blob, dtype="<f4", count=n * out_size, offset=pos)
            t = torch.from_numpy(t.reshape(n, out_size).copy())
            pos += 4 * n * out_size
        out.append((torch.from_numpy(x.copy()), t))
    return out
