#!/usr/bin/python3
"""PyTorch goldens for kerngen's train pass: several optimizer steps on a small regression.

How to run (from the repository root):

    /usr/bin/python3 tests/golden/make_train_goldens.py [--out DIR]

Needs Debian's python3-torch for /usr/bin/python3; the tests read the output without torch.
--out defaults to tests/golden_train/. The script recreates the case directories it writes and
rewrites DIR/index.txt.

Each case trains some inputs of one graph with one torch.optim optimizer, in float64, for
STEPS steps of the loss 0.5 * sum((y - target)^2) (so the output cotangent is y - target):

    opt.zero_grad(); y = graph(inputs); loss = 0.5 * ((y - target) ** 2).sum()
    loss.backward(); opt.step()

DIR/<case>/ holds:
    case.txt           "GRAPH NAME=VALUE ..." / "train=A,B optimizer=O steps=N" / "# description"
    <input>.npy        every input before the first step (float64, C order)
    target.npy         the regression target
    opt.npy            the hyperparameters in kerngen's order (gen/optim.lua); for adam and
                       adamw the last one, step, is 1 here (the test counts the steps)
    <input>.final.npy  each trained input after STEPS steps
    <input>_<key>.final.npy  its optimizer state after STEPS steps (torch's state names)
    loss.npy           the loss before each step
"""

import argparse
import hashlib
import os
import shutil

import numpy as np
import torch
import torch.nn.functional as F

DT = torch.float64
STEPS = 5


def layernorm(t, p):
    return F.layer_norm(t["x"], (p["dim"],), t["gamma"], t["beta"], p["eps"])


def seq_ffn(t, p):
    h = F.linear(t["x"], t["w1"], t["b1"])
    return t["x"] + F.linear(F.gelu(h, approximate="tanh"), t["w2"], t["b2"])


def prenorm_ffn(t, p):
    n = F.layer_norm(t["x"], (p["dmodel"],), t["gamma"], t["beta"], p["eps"])
    h = F.linear(n, t["w1"], t["b1"])
    return t["x"] + F.linear(F.gelu(h, approximate="tanh"), t["w2"], t["b2"])


def randn(*s):
    return torch.randn(*s, dtype=DT)


def ln_inputs(p):
    return {"x": randn(p["rows"], p["dim"]), "gamma": 1 + 0.1 * randn(p["dim"]),
            "beta": 0.1 * randn(p["dim"])}


def ffn_weights(d, f):
    return {"w1": randn(f, d) / d ** 0.5, "b1": 0.1 * randn(f), "w2": randn(d, f) / f ** 0.5,
            "b2": 0.1 * randn(d)}


def seq_ffn_inputs(p):
    t = {"x": randn(p["seq"], p["dmodel"])}
    t.update(ffn_weights(p["dmodel"], p["dff"]))
    return t


def prenorm_inputs(p):
    t = {"x": randn(p["seq"], p["dmodel"]), "gamma": 1 + 0.1 * randn(p["dmodel"]),
         "beta": 0.1 * randn(p["dmodel"])}
    t.update(ffn_weights(p["dmodel"], p["dff"]))
    return t


# graph -> (function, inputs, the order of NAME=VALUE in case.txt)
GRAPHS = {
    "layernorm": (layernorm, ln_inputs, ["rows", "dim", "eps"]),
    "seq_ffn": (seq_ffn, seq_ffn_inputs, ["seq", "dmodel", "dff", "gelu"]),
    "prenorm_ffn": (prenorm_ffn, prenorm_inputs, ["seq", "dmodel", "dff", "eps", "gelu"]),
}

# optimizer -> (torch constructor from the hyperparameters, kerngen's opt vector, state keys)
OPTIMIZERS = {
    "sgd": (lambda ps, h: torch.optim.SGD(ps, lr=h["lr"], weight_decay=h["weight_decay"]),
            ["lr", "weight_decay"], []),
    "momentum": (lambda ps, h: torch.optim.SGD(ps, lr=h["lr"], momentum=h["momentum"],
                                               weight_decay=h["weight_decay"]),
                 ["lr", "momentum", "weight_decay"], ["momentum_buffer"]),
    "adam": (lambda ps, h: torch.optim.Adam(ps, lr=h["lr"], betas=(h["beta1"], h["beta2"]),
                                            eps=h["eps"], weight_decay=h["weight_decay"]),
             ["lr", "beta1", "beta2", "eps", "weight_decay", "step"], ["exp_avg", "exp_avg_sq"]),
    "adamw": (lambda ps, h: torch.optim.AdamW(ps, lr=h["lr"], betas=(h["beta1"], h["beta2"]),
                                              eps=h["eps"], weight_decay=h["weight_decay"]),
              ["lr", "beta1", "beta2", "eps", "weight_decay", "step"], ["exp_avg", "exp_avg_sq"]),
}

HYPER = {"lr": 0.05, "momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
         "weight_decay": 0.01, "step": 1.0}

LN = dict(rows=3, dim=5, eps=1e-5)
FFN = dict(seq=2, dmodel=4, dff=6, gelu="tanh")
PRE = dict(seq=2, dmodel=4, dff=6, eps=1e-5, gelu="tanh")

CASES = [
    ("layernorm_sgd", "layernorm", LN, ["gamma", "beta"], "sgd"),
    ("layernorm_momentum", "layernorm", LN, ["gamma", "beta"], "momentum"),
    ("layernorm_adam", "layernorm", LN, ["gamma", "beta"], "adam"),
    ("layernorm_adamw", "layernorm", LN, ["gamma", "beta"], "adamw"),
    ("seq_ffn_adam", "seq_ffn", FFN, ["w1", "b1", "w2", "b2"], "adam"),
    ("prenorm_ffn_adam_frozen_w", "prenorm_ffn", PRE, ["gamma", "beta", "b1", "b2"], "adam"),
]


def seed_of(name):
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little") & 0x7FFFFFFF


def fmt(v):
    return repr(v) if isinstance(v, float) else str(v)


def run_case(name, graph, p, train, opt_name, out):
    fn, make_inputs, fields = GRAPHS[graph]
    torch.manual_seed(seed_of(name))
    inputs = make_inputs(p)
    target = None
    d = os.path.join(out, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for k, v in inputs.items():
        np.save(os.path.join(d, k + ".npy"), v.numpy())
    t = {k: v.clone().requires_grad_(k in train) for k, v in inputs.items()}
    with torch.no_grad():
        y0 = fn(t, p)
    target = y0 + 0.5 * randn(*y0.shape)  # reachable-ish: a perturbation of the start
    np.save(os.path.join(d, "target.npy"), target.numpy())
    make_opt, hyper, keys = OPTIMIZERS[opt_name]
    np.save(os.path.join(d, "opt.npy"), np.array([HYPER[h] for h in hyper]))
    opt = make_opt([t[k] for k in train], HYPER)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = 0.5 * ((fn(t, p) - target) ** 2).sum()
        losses.append(loss.item())
        loss.backward()
        opt.step()
    np.save(os.path.join(d, "loss.npy"), np.array(losses))
    for k in train:
        np.save(os.path.join(d, k + ".final.npy"), t[k].detach().numpy())
        for key in keys:
            np.save(os.path.join(d, f"{k}_{key}.final.npy"), opt.state[t[k]][key].numpy())
    with open(os.path.join(d, "case.txt"), "w") as f:
        f.write(" ".join([graph] + [f"{k}={fmt(p[k])}" for k in fields]) + "\n")
        f.write(f"train={','.join(train)} optimizer={opt_name} steps={STEPS}\n")
        f.write(f"# {STEPS} steps of {opt_name} on 0.5*sum((y - target)^2); loss {losses[0]:.6g} -> "
                f"{losses[-1]:.6g} before the last step\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden_train"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for c in CASES:
        run_case(*c, args.out)
    with open(os.path.join(args.out, "index.txt"), "w") as f:
        f.write("\n".join(c[0] for c in CASES) + "\n")
    print(f"wrote {len(CASES)} cases to {os.path.normpath(args.out)}")


if __name__ == "__main__":
    main()
