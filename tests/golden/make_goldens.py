#!/usr/bin/python3
"""PyTorch golden-data generator for kerngen's normalization and FFN kernels.

How to run (from the repository root):

    /usr/bin/python3 tests/golden/make_goldens.py [--out DIR]

It needs PyTorch and numpy for /usr/bin/python3 (Debian's python3-torch and
python3-numpy); the python3 first on PATH may not have them.  --out defaults
to the directory holding this script (tests/golden/).  The script deletes and
recreates only the case directories it writes, and rewrites DIR/index.txt.

The test suite reads the output (.npy files and case.txt) WITHOUT torch; the
generated files are committed, so torch is needed only to regenerate them.

For every case the script writes DIR/<case>/:
    case.txt                 "GRAPH NAME=VALUE ..." then "# description"
    <input>.npy              forward inputs (float64, C order)
    <output>.npy             forward result
    <output>.cotangent.npy   random non-uniform cotangent
    <input>.grad.npy         VJP: d sum(output * cotangent) / d input
    <input>.tangent.npy      random tangent
    <output>.tangent.npy     JVP: directional derivative along the tangents

All math is float64.  Every case seeds torch with a value derived from its
own name, so cases are independent of each other and of their order.  The
JVP is computed with torch.autograd.functional.jvp and checked against a
fourth-order central finite difference; VJP and JVP are also checked against
each other with the dot-product identity <cot, J t> = <J^T cot, t>.
"""

import argparse
import hashlib
import math
import os
import shutil

import numpy as np
import torch
import torch.nn.functional as F

DT = torch.float64

# --------------------------------------------------------------------------
# Reference operators.  Each takes (inputs: dict name -> tensor, attrs/dims
# dict) and returns dict output name -> tensor.  All statistics use the
# biased variance (divide by the count); std = sqrt(max(var, 0) + eps).
# --------------------------------------------------------------------------


def _biased_var(x, dims):
    """Two-pass biased variance over `dims` (keepdim)."""
    m = x.mean(dim=dims, keepdim=True)
    return m, ((x - m) ** 2).mean(dim=dims, keepdim=True)


def _layernorm(x, gamma, beta, eps):
    """Two-pass layer norm over the last axis, asserted equal to F.layer_norm.

    The by-hand form is what gets differentiated: F.layer_norm's fused native
    kernel leaves rounding noise (~1e-13) where the exact answer is zero
    (e.g. the x gradient when dim=1 or the output of a constant row).
    """
    m, v = _biased_var(x, (-1,))
    y = (x - m) / torch.sqrt(v + eps) * gamma + beta
    _check_close(y, F.layer_norm(x, (x.shape[-1],), gamma, beta, eps),
                 "layernorm by-hand vs F.layer_norm")
    return y


def op_layernorm(t, p):
    """layernorm: x[rows][dim], gamma[dim], beta[dim]; attr eps.

    y = F.layer_norm(x, (dim,), gamma, beta, eps), i.e. per row
    y = (x - mean(x)) / sqrt(var(x) + eps) * gamma + beta (biased var).
    """
    return {"y": _layernorm(t["x"], t["gamma"], t["beta"], p["eps"])}


def op_rmsnorm(t, p):
    """rmsnorm: x[rows][dim], gamma[dim], beta[dim] only when bias=1; attrs eps, bias.

    y = x / sqrt(mean(x^2 over last axis) + eps) * gamma (+ beta).
    (Written by hand: torch 1.13 has no rms_norm.)
    """
    x = t["x"]
    ms = (x * x).mean(dim=-1, keepdim=True)
    y = x / torch.sqrt(ms + p["eps"]) * t["gamma"]
    if p["bias"]:
        y = y + t["beta"]
    return {"y": y}


def _batchnorm_by_hand(x, gamma, beta, eps):
    """x[c][...]: per-channel stats over all remaining axes."""
    spatial = tuple(range(1, x.dim()))
    m, v = _biased_var(x, spatial)
    shp = (-1,) + (1,) * (x.dim() - 1)
    return (x - m) / torch.sqrt(v + eps) * gamma.reshape(shp) + beta.reshape(shp)


def op_batchnorm(t, p):
    """batchnorm1d/2d/3d (training statistics, N=1): x[c][l] / x[c][h][w] /
    x[c][d][h][w], gamma[c], beta[c]; attr eps.

    y = F.batch_norm(x.unsqueeze(0), None, None, gamma, beta, training=True,
    eps=eps).squeeze(0): per-channel mean/biased var over the spatial axes.
    Computed by hand (two-pass) and asserted equal to F.batch_norm; the
    by-hand form is differentiated (exact zeros where F's fused kernel leaves
    rounding noise).  F.batch_norm refuses a single value per channel (l=1),
    so there the cross-check is skipped (y = beta exactly).
    """
    x, gamma, beta, eps = t["x"], t["gamma"], t["beta"], p["eps"]
    y = _batchnorm_by_hand(x, gamma, beta, eps)
    if x[0].numel() > 1:
        ref = F.batch_norm(x.unsqueeze(0), None, None, gamma, beta,
                           training=True, eps=eps).squeeze(0)
        _check_close(y, ref, "batchnorm by-hand vs F.batch_norm")
    return {"y": y}


def op_batchnorm_inference(t, p):
    """batchnorm_inference1d/2d/3d: x[c][...], gamma[c], beta[c],
    running_mean[c], running_var[c]; attr eps.

    y = (x - running_mean) / sqrt(max(running_var, 0) + eps) * gamma + beta,
    broadcast per channel (by hand so running_mean/running_var have gradients).
    """
    x = t["x"]
    shp = (-1,) + (1,) * (x.dim() - 1)
    rm = t["running_mean"].reshape(shp)
    rv = torch.clamp(t["running_var"], min=0.0).reshape(shp)
    y = (x - rm) / torch.sqrt(rv + p["eps"]) * t["gamma"].reshape(shp) \
        + t["beta"].reshape(shp)
    return {"y": y}


def op_groupnorm(t, p):
    """groupnorm (CHANNEL-LAST): x[b][h][w][c], gamma[c], beta[c]; dims b, h,
    w, c, groups; attr eps.

    y = F.group_norm(x.permute(0,3,1,2), groups, gamma, beta, eps)
          .permute(0,2,3,1).contiguous()
    Group k holds channels k*c/groups .. (k+1)*c/groups-1 at every (h, w);
    stats are per (batch, group) over h, w and the group's channels.
    Computed by hand (two-pass) and asserted equal to F.group_norm.
    """
    x, g = t["x"], p["groups"]
    b, h, w, c = x.shape
    xg = x.reshape(b, h, w, g, c // g)
    m, v = _biased_var(xg, (1, 2, 4))
    y = ((xg - m) / torch.sqrt(v + p["eps"])).reshape(b, h, w, c) \
        * t["gamma"] + t["beta"]
    ref = F.group_norm(x.permute(0, 3, 1, 2), g, t["gamma"], t["beta"], p["eps"])
    _check_close(y, ref.permute(0, 2, 3, 1), "groupnorm by-hand vs F.group_norm")
    return {"y": y}


def op_weightnorm(t, p):
    """weightnorm: v[out][in], g[out]; attr eps.  Output is named w.

    w[o][i] = g[o] * v[o][i] / sqrt(sum_i v[o][i]^2 + eps).
    """
    v = t["v"]
    n = torch.sqrt((v * v).sum(dim=1, keepdim=True) + p["eps"])
    return {"w": t["g"].unsqueeze(1) * v / n}


def op_normalize_axis(t, p):
    """normalize_axis: x, gamma, beta all of shape `shape`; dim axis (0-based);
    attr eps.

    y = (x - mean_axis(x)) / sqrt(var_axis(x) + eps) * gamma + beta, with
    mean/biased var along `axis` only (keepdim broadcasting) and an
    element-wise affine.
    """
    m, v = _biased_var(t["x"], (p["axis"],))
    return {"y": (t["x"] - m) / torch.sqrt(v + p["eps"]) * t["gamma"] + t["beta"]}


def gelu(a, kind):
    """GELU, written in forms that keep relative accuracy in the negative tail.

    erf:  0.5*a*(1 + erf(a/sqrt2))  ==  0.5*a*erfc(-a/sqrt2)
    tanh: 0.5*a*(1 + tanh(u))       ==  a*sigmoid(2u),
          u = sqrt(2/pi)*(a + 0.044715 a^3)
    These are mathematically identical to F.gelu(approximate='none'/'tanh'),
    but F.gelu evaluates 1 + erf(..) / 1 + tanh(..) literally, which cancels
    catastrophically for a << 0 (F.gelu(-8) is 2% off, F.gelu(-10) == 0).
    The result is asserted to agree with F.gelu to 1e-15 absolute.
    """
    if kind == "erf":
        r = 0.5 * a * torch.special.erfc(-a / math.sqrt(2.0))
        ref = F.gelu(a, approximate="none")
    elif kind == "tanh":
        u = math.sqrt(2.0 / math.pi) * (a + 0.044715 * a ** 3)
        r = a * torch.sigmoid(2.0 * u)
        ref = F.gelu(a, approximate="tanh")
    else:
        raise ValueError(kind)
    assert torch.allclose(r, ref, rtol=1e-13, atol=1e-15), (kind, r, ref)
    return r


def _ffn_noresidual(h, t, kind):
    """F.linear(gelu(F.linear(h, w1, b1)), w2, b2); h is [..., dmodel]."""
    return F.linear(gelu(F.linear(h, t["w1"], t["b1"]), kind), t["w2"], t["b2"])


def op_ffn(t, p):
    """ffn: x[dmodel], w1[dff][dmodel], b1[dff], w2[dmodel][dff], b2[dmodel];
    attr gelu (erf | tanh).

    y = x + F.linear(gelu(F.linear(x, w1, b1)), w2, b2).
    """
    return {"y": t["x"] + _ffn_noresidual(t["x"], t, p["gelu"])}


def op_seq_ffn(t, p):
    """seq_ffn: x[seq][dmodel], same weights as ffn; attr gelu.

    y[s] = ffn(x[s]) row by row.
    """
    return {"y": t["x"] + _ffn_noresidual(t["x"], t, p["gelu"])}


def op_prenorm_ffn(t, p):
    """prenorm_ffn: x[seq][dmodel], gamma[dmodel], beta[dmodel], w1, b1, w2,
    b2; attrs eps, gelu.

    y = x + w2 gelu(w1 LN(x) + b1) + b2, LN = layer norm with gamma, beta, eps.
    """
    h = _layernorm(t["x"], t["gamma"], t["beta"], p["eps"])
    return {"y": t["x"] + _ffn_noresidual(h, t, p["gelu"])}


def op_postnorm_ffn(t, p):
    """postnorm_ffn: same inputs/attrs as prenorm_ffn.

    y = LN(x + w2 gelu(w1 x + b1) + b2), LN with gamma, beta, eps.
    """
    r = t["x"] + _ffn_noresidual(t["x"], t, p["gelu"])
    return {"y": _layernorm(r, t["gamma"], t["beta"], p["eps"])}


def op_softmax(t, p):
    """softmax: x[rows][dim]; y = torch.softmax(x, dim=-1)."""
    return {"y": torch.softmax(t["x"], dim=-1)}


def op_log_softmax(t, p):
    """log_softmax: x[rows][dim]; y = torch.log_softmax(x, dim=-1)."""
    return {"y": torch.log_softmax(t["x"], dim=-1)}


def _check_close(a, b, what):
    assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), \
        f"{what}: max diff {(a - b).abs().max().item()}"


# --------------------------------------------------------------------------
# Input shapes and generators.
# --------------------------------------------------------------------------

def randn(*shape):
    return torch.randn(*shape, dtype=DT)


def rand_uniform(lo, hi, *shape):
    return lo + (hi - lo) * torch.rand(*shape, dtype=DT)


def gen_norm_affine(xshape, c):
    """x ~ N(0,1) of xshape, gamma, beta ~ N(0,1) of [c]."""
    return {"x": randn(*xshape), "gamma": randn(c), "beta": randn(c)}


def in_layernorm(p):
    return gen_norm_affine((p["rows"], p["dim"]), p["dim"])


def in_rmsnorm(p):
    t = {"x": randn(p["rows"], p["dim"]), "gamma": randn(p["dim"])}
    if p["bias"]:
        t["beta"] = randn(p["dim"])
    return t


def _bn_xshape(graph, p):
    if graph.endswith("1d"):
        return (p["c"], p["l"])
    if graph.endswith("2d"):
        return (p["c"], p["h"], p["w"])
    return (p["c"], p["d"], p["h"], p["w"])


def in_batchnorm(graph, p):
    return gen_norm_affine(_bn_xshape(graph, p), p["c"])


def in_batchnorm_inference(graph, p):
    t = gen_norm_affine(_bn_xshape(graph, p), p["c"])
    t["running_mean"] = randn(p["c"])
    t["running_var"] = rand_uniform(0.5, 2.0, p["c"])  # strictly positive
    return t


def in_groupnorm(p):
    return gen_norm_affine((p["b"], p["h"], p["w"], p["c"]), p["c"])


def in_weightnorm(p):
    return {"v": randn(p["out"], p["in"]), "g": randn(p["out"])}


def in_normalize_axis(p):
    s = p["shape"]
    return {"x": randn(*s), "gamma": randn(*s), "beta": randn(*s)}


def in_softmax(p):
    return {"x": randn(p["rows"], p["dim"])}


def _ffn_weights(dmodel, dff):
    return {
        "w1": randn(dff, dmodel) / math.sqrt(dmodel),
        "b1": 0.5 * randn(dff),
        "w2": randn(dmodel, dff) / math.sqrt(dff),
        "b2": 0.5 * randn(dmodel),
    }


def in_ffn(p):
    t = {"x": randn(p["dmodel"])}
    t.update(_ffn_weights(p["dmodel"], p["dff"]))
    return t


def in_seq_ffn(p):
    t = {"x": randn(p["seq"], p["dmodel"])}
    t.update(_ffn_weights(p["dmodel"], p["dff"]))
    return t


def in_norm_ffn(p):
    t = {"x": randn(p["seq"], p["dmodel"]),
         "gamma": randn(p["dmodel"]), "beta": randn(p["dmodel"])}
    t.update(_ffn_weights(p["dmodel"], p["dff"]))
    return t


# Per graph: (operator, input-name order, output names, default generator,
# order of the NAME=VALUE fields in case.txt).
BN_IN = ["x", "gamma", "beta"]
BNI_IN = ["x", "gamma", "beta", "running_mean", "running_var"]
FFN_W = ["w1", "b1", "w2", "b2"]
GRAPHS = {
    "layernorm": (op_layernorm, ["x", "gamma", "beta"], ["y"], in_layernorm,
                  ["rows", "dim", "eps"]),
    "rmsnorm": (op_rmsnorm, None, ["y"], in_rmsnorm,
                ["rows", "dim", "eps", "bias"]),
    "batchnorm1d": (op_batchnorm, BN_IN, ["y"],
                    lambda p: in_batchnorm("batchnorm1d", p), ["c", "l", "eps"]),
    "batchnorm2d": (op_batchnorm, BN_IN, ["y"],
                    lambda p: in_batchnorm("batchnorm2d", p),
                    ["c", "h", "w", "eps"]),
    "batchnorm3d": (op_batchnorm, BN_IN, ["y"],
                    lambda p: in_batchnorm("batchnorm3d", p),
                    ["c", "d", "h", "w", "eps"]),
    "batchnorm_inference1d": (
        op_batchnorm_inference, BNI_IN, ["y"],
        lambda p: in_batchnorm_inference("1d", p), ["c", "l", "eps"]),
    "batchnorm_inference2d": (
        op_batchnorm_inference, BNI_IN, ["y"],
        lambda p: in_batchnorm_inference("2d", p), ["c", "h", "w", "eps"]),
    "batchnorm_inference3d": (
        op_batchnorm_inference, BNI_IN, ["y"],
        lambda p: in_batchnorm_inference("3d", p), ["c", "d", "h", "w", "eps"]),
    "groupnorm": (op_groupnorm, ["x", "gamma", "beta"], ["y"], in_groupnorm,
                  ["b", "h", "w", "c", "groups", "eps"]),
    "weightnorm": (op_weightnorm, ["v", "g"], ["w"], in_weightnorm,
                   ["out", "in", "eps"]),
    "normalize_axis": (op_normalize_axis, ["x", "gamma", "beta"], ["y"],
                       in_normalize_axis, ["shape", "axis", "eps"]),
    "ffn": (op_ffn, ["x"] + FFN_W, ["y"], in_ffn, ["dmodel", "dff", "gelu"]),
    "seq_ffn": (op_seq_ffn, ["x"] + FFN_W, ["y"], in_seq_ffn,
                ["seq", "dmodel", "dff", "gelu"]),
    "prenorm_ffn": (op_prenorm_ffn, ["x", "gamma", "beta"] + FFN_W, ["y"],
                    in_norm_ffn, ["seq", "dmodel", "dff", "eps", "gelu"]),
    "softmax": (op_softmax, ["x"], ["y"], in_softmax, ["rows", "dim"]),
    "log_softmax": (op_log_softmax, ["x"], ["y"], in_softmax, ["rows", "dim"]),
    "postnorm_ffn": (op_postnorm_ffn, ["x", "gamma", "beta"] + FFN_W, ["y"],
                     in_norm_ffn, ["seq", "dmodel", "dff", "eps", "gelu"]),
}


def input_names(graph, p):
    if graph == "rmsnorm":
        return ["x", "gamma", "beta"] if p["bias"] else ["x", "gamma"]
    return GRAPHS[graph][1]


# --------------------------------------------------------------------------
# Case-specific input generators (degenerate / hard cases).  Constants are
# dyadic (exactly representable, exact sums) so "constant" slices have an
# exactly-zero deviation from their mean.
# --------------------------------------------------------------------------

def in_layernorm_const_rows(p):
    t = in_layernorm(p)
    t["x"][1, :] = 1.5
    t["x"][3, :] = -0.25
    return t


def in_layernorm_mean1e4(p):
    t = in_layernorm(p)
    t["x"] = 1e4 + t["x"]
    return t


def in_layernorm_zero_gamma(p):
    t = in_layernorm(p)
    t["gamma"] = torch.zeros(p["dim"], dtype=DT)
    return t


def in_rmsnorm_zero_row(p):
    t = in_rmsnorm(p)
    t["x"][1, :] = 0.0
    return t


def in_batchnorm2d_const_channel(p):
    t = in_batchnorm("batchnorm2d", p)
    t["x"][1] = 0.75
    return t


def in_groupnorm_const_group(p):
    t = in_groupnorm(p)
    per = p["c"] // p["groups"]
    t["x"][:, :, :, per:2 * per] = -1.25  # group 1, every batch and (h, w)
    return t


def in_weightnorm_eps0(p):
    t = in_weightnorm(p)
    # Keep every row well away from zero norm (eps=0: a zero row is a domain error).
    t["v"] = t["v"] + torch.sign(t["v"]) * 0.1
    return t


def in_ffn_negative_tail(p):
    t = in_ffn(p)
    t["w1"] = 0.1 * t["w1"]
    t["b1"] = rand_uniform(-10.0, -6.0, p["dff"])
    return t


def in_softmax_mean1000(p):
    t = in_softmax(p)
    t["x"] = 1000.0 + t["x"]  # exp(x) alone would overflow
    return t


def in_softmax_ties(p):
    t = in_softmax(p)
    t["x"][0, :] = 0.5                 # constant row: y = 1/dim exactly
    t["x"][1, 2] = t["x"][1, 5] = 4.0  # two tied maxima
    return t


EPS = 1e-05


def C(name, graph, params, desc, gen=None):
    return {"name": name, "graph": graph, "params": params, "desc": desc,
            "gen": gen}


CASES = [
    # layernorm
    C("layernorm", "layernorm", dict(rows=3, dim=5, eps=EPS),
      "Ordinary layer norm over the last axis with random x, gamma, beta."),
    C("layernorm_dim1", "layernorm", dict(rows=4, dim=1, eps=EPS),
      "One-element rows: y = beta exactly and the x and gamma gradients are zero."),
    C("layernorm_const_rows", "layernorm", dict(rows=4, dim=5, eps=EPS),
      "Rows 1 and 3 are constant, so their variance is zero and eps alone sets the scale.",
      in_layernorm_const_rows),
    C("layernorm_mean1e4", "layernorm", dict(rows=3, dim=5, eps=EPS),
      "Rows of 1e4 + N(0,1): a naive E[x^2]-E[x]^2 variance loses most digits here.",
      in_layernorm_mean1e4),
    C("layernorm_eps1e-12", "layernorm", dict(rows=3, dim=5, eps=1e-12),
      "Tiny eps=1e-12, which must be carried as a double and not rounded to float."),
    C("layernorm_zero_gamma", "layernorm", dict(rows=3, dim=5, eps=EPS),
      "gamma all zero: y = beta and the x gradient vanishes but the gamma gradient does not.",
      in_layernorm_zero_gamma),
    # rmsnorm
    C("rmsnorm", "rmsnorm", dict(rows=3, dim=5, eps=EPS, bias=0),
      "Ordinary RMS norm without bias (inputs x, gamma only)."),
    C("rmsnorm_bias", "rmsnorm", dict(rows=3, dim=5, eps=EPS, bias=1),
      "RMS norm with the optional beta bias input."),
    C("rmsnorm_zero_row", "rmsnorm", dict(rows=3, dim=5, eps=EPS, bias=1),
      "Row 1 is all zeros, so its mean square is zero and eps alone sets the scale.",
      in_rmsnorm_zero_row),
    # batchnorm (training statistics, N=1)
    C("batchnorm1d", "batchnorm1d", dict(c=3, l=5, eps=EPS),
      "Ordinary 1-d batch norm with per-channel statistics over l."),
    C("batchnorm2d", "batchnorm2d", dict(c=3, h=2, w=3, eps=EPS),
      "Ordinary 2-d batch norm with per-channel statistics over h and w."),
    C("batchnorm3d", "batchnorm3d", dict(c=2, d=2, h=3, w=2, eps=EPS),
      "Ordinary 3-d batch norm with per-channel statistics over d, h and w."),
    C("batchnorm2d_const_channel", "batchnorm2d", dict(c=3, h=2, w=3, eps=EPS),
      "Channel 1 is constant, so its variance is zero and eps alone sets the scale.",
      in_batchnorm2d_const_channel),
    C("batchnorm1d_l1", "batchnorm1d", dict(c=3, l=1, eps=EPS),
      "One element per channel: y = beta and the x and gamma gradients are zero."),
    # batchnorm inference
    C("batchnorm_inference1d", "batchnorm_inference1d", dict(c=3, l=5, eps=EPS),
      "1-d batch norm with running statistics, including gradients for running_mean/var."),
    C("batchnorm_inference2d", "batchnorm_inference2d", dict(c=3, h=2, w=3, eps=EPS),
      "2-d batch norm with running statistics, including gradients for running_mean/var."),
    C("batchnorm_inference3d", "batchnorm_inference3d",
      dict(c=2, d=2, h=3, w=2, eps=EPS),
      "3-d batch norm with running statistics, including gradients for running_mean/var."),
    # groupnorm (channel-last)
    C("groupnorm", "groupnorm", dict(b=2, h=2, w=3, c=6, groups=3, eps=EPS),
      "Ordinary channel-last group norm with 3 groups of 2 channels."),
    C("groupnorm_groups1", "groupnorm", dict(b=2, h=2, w=3, c=6, groups=1, eps=EPS),
      "A single group: statistics over h, w and all channels per batch item."),
    C("groupnorm_const_group", "groupnorm", dict(b=2, h=2, w=3, c=6, groups=3, eps=EPS),
      "Group 1 is constant in every batch item, so eps alone sets its scale.",
      in_groupnorm_const_group),
    C("groupnorm_c_eq_groups", "groupnorm", dict(b=2, h=2, w=3, c=6, groups=6, eps=EPS),
      "groups = c: every channel is its own group (instance norm)."),
    # weightnorm
    C("weightnorm", "weightnorm", {"out": 3, "in": 5, "eps": EPS},
      "Ordinary weight norm w = g * v / ||v|| per output row."),
    C("weightnorm_eps0", "weightnorm", {"out": 3, "in": 5, "eps": 0.0},
      "Weight norm with eps=0 (rows kept away from zero norm).", in_weightnorm_eps0),
    # normalize_axis
    C("normalize_axis_0", "normalize_axis", dict(shape=(2, 3, 4), axis=0, eps=EPS),
      "Normalization along the outermost axis of a 2x3x4 tensor with element-wise affine."),
    C("normalize_axis_1", "normalize_axis", dict(shape=(2, 3, 4), axis=1, eps=EPS),
      "Normalization along the middle axis of a 2x3x4 tensor with element-wise affine."),
    C("normalize_axis_2", "normalize_axis", dict(shape=(2, 3, 4), axis=2, eps=EPS),
      "Normalization along the innermost axis of a 2x3x4 tensor with element-wise affine."),
    C("normalize_axis_rank1", "normalize_axis", dict(shape=(7,), axis=0, eps=EPS),
      "Normalization of a rank-1 tensor along its only axis."),
    # FFN family
    C("ffn_erf", "ffn", dict(dmodel=4, dff=6, gelu="erf"),
      "Single-token residual FFN with the exact (erf) GELU."),
    C("ffn_tanh", "ffn", dict(dmodel=4, dff=6, gelu="tanh"),
      "Single-token residual FFN with the tanh-approximated GELU."),
    C("ffn_negative_tail", "ffn", dict(dmodel=4, dff=6, gelu="erf"),
      "Pre-activations around -6..-10 check the relative accuracy of erf-GELU and its derivative in the tail.",
      in_ffn_negative_tail),
    C("seq_ffn", "seq_ffn", dict(seq=3, dmodel=4, dff=6, gelu="tanh"),
      "Row-wise residual FFN over a sequence of 3 tokens with tanh GELU."),
    C("prenorm_ffn", "prenorm_ffn", dict(seq=2, dmodel=4, dff=6, eps=EPS, gelu="erf"),
      "Pre-norm block y = x + FFN(LN(x)) with erf GELU."),
    C("postnorm_ffn", "postnorm_ffn", dict(seq=2, dmodel=4, dff=6, eps=EPS, gelu="tanh"),
      "Post-norm block y = LN(x + FFN(x)) with tanh GELU."),
    # softmax
    C("softmax", "softmax", dict(rows=3, dim=7),
      "torch.softmax over the last axis with random x."),
    C("softmax_mean1000", "softmax", dict(rows=3, dim=7),
      "Rows around 1000: exp(x) overflows, so only the max-shifted form is finite.",
      in_softmax_mean1000),
    C("softmax_ties", "softmax", dict(rows=3, dim=7),
      "A constant row (y = 1/7) and a row with two tied maxima.",
      in_softmax_ties),
    # log_softmax
    C("log_softmax", "log_softmax", dict(rows=3, dim=7),
      "torch.log_softmax over the last axis with random x."),
    C("log_softmax_mean1000", "log_softmax", dict(rows=3, dim=7),
      "Rows around 1000: exp(x) overflows, so only the max-shifted form is finite.",
      in_softmax_mean1000),
    C("log_softmax_ties", "log_softmax", dict(rows=3, dim=7),
      "A constant row (y = -log 7) and a row with two tied maxima.",
      in_softmax_ties),
]


# --------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------

def case_seed(name):
    """Seed derived from the case name only (stable across runs/platforms)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little") & 0x7FFFFFFF


def fmt_value(v):
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple):
        return "x".join(str(d) for d in v)
    return str(v)


def case_line(case):
    fields = GRAPHS[case["graph"]][4]
    p = case["params"]
    assert set(fields) == set(p), (case["name"], fields, p)
    return " ".join([case["graph"]] + [f"{k}={fmt_value(p[k])}" for k in fields])


def fd_jvp(f, xs, ts, h=1e-5):
    """Fourth-order central difference of f along the tangents ts."""
    def at(s):
        return f(*[x + s * t for x, t in zip(xs, ts)])
    p1, m1, p2, m2 = at(h), at(-h), at(2 * h), at(-2 * h)
    return tuple((8 * (a - b) - (c - d)) / (12 * h)
                 for a, b, c, d in zip(p1, m1, p2, m2))


def run_case(case, out_dir):
    name, graph, p = case["name"], case["graph"], case["params"]
    op, _, out_names, default_gen, _ = GRAPHS[graph]
    in_names = input_names(graph, p)

    torch.manual_seed(case_seed(name))
    gen = case["gen"] or default_gen
    inputs = gen(p)
    assert list(inputs) == in_names, (name, list(inputs), in_names)
    for v in inputs.values():
        assert v.dtype == DT

    def f(*xs):
        outs = op(dict(zip(in_names, xs)), p)
        return tuple(outs[o] for o in out_names)

    xs = [inputs[k].detach().clone().requires_grad_(True) for k in in_names]
    ys = f(*xs)
    # Random, non-uniform cotangents and tangents (drawn after the inputs).
    cots = [randn(*y.shape) for y in ys]
    tans = [randn(*x.shape) for x in xs]

    # VJP.
    grads = torch.autograd.grad(ys, xs, grad_outputs=cots, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(xs, grads)]

    # JVP (double-backward trick inside torch.autograd.functional.jvp).
    plain = [x.detach() for x in xs]
    _, jvps = torch.autograd.functional.jvp(f, tuple(plain), tuple(tans))
    if not isinstance(jvps, tuple):
        jvps = (jvps,)

    # Cross-check JVP against a finite difference.
    with torch.no_grad():
        fds = fd_jvp(f, plain, tans)
    for o, j, d in zip(out_names, jvps, fds):
        err = (j - d).abs().max().item()
        scale = j.abs().max().item()
        if os.environ.get("GOLDEN_VERBOSE"):
            print(f"{name:28s} {o}: |jvp - fd| = {err:.2e}, max|jvp| = {scale:.2e}")
        assert err <= 1e-6 * scale + 1e-13, \
            f"{name}: JVP of {o} vs finite difference: err {err:.3e} scale {scale:.3e}"
    # Cross-check VJP against JVP: <cot, J t> == <J^T cot, t>.
    lhs = sum((c * j).sum() for c, j in zip(cots, jvps)).item()
    rhs = sum((g * t).sum() for g, t in zip(grads, tans)).item()
    assert abs(lhs - rhs) <= 1e-10 * max(abs(lhs), abs(rhs), 1.0), (name, lhs, rhs)

    d = os.path.join(out_dir, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    with open(os.path.join(d, "case.txt"), "w") as fh:
        fh.write(case_line(case) + "\n# " + case["desc"] + "\n")

    def save(fname, t):
        # "+ 0.0" turns -0.0 into +0.0 and changes nothing else.
        a = np.ascontiguousarray(t.detach().numpy(), dtype=np.float64) + 0.0
        np.save(os.path.join(d, fname), a)

    for k, x, g, t in zip(in_names, plain, grads, tans):
        save(f"{k}.npy", x)
        save(f"{k}.grad.npy", g)
        save(f"{k}.tangent.npy", t)
    for o, y, c, j in zip(out_names, ys, cots, jvps):
        save(f"{o}.npy", y)
        save(f"{o}.cotangent.npy", c)
        save(f"{o}.tangent.npy", j)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                    help="output directory (default: this script's directory)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)

    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case name"
    for case in CASES:
        run_case(case, args.out)
    with open(os.path.join(args.out, "index.txt"), "w") as fh:
        fh.write("".join(n + "\n" for n in sorted(names)))
    print(f"wrote {len(CASES)} cases to {args.out}")


if __name__ == "__main__":
    main()
