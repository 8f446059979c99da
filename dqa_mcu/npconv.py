"""Vectorized NHWC convolution and pooling windows in NumPy.

Shared by the float executor and the integer reference. Integer callers pass
integer-valued float arrays and a dtype wide enough to hold every partial sum
exactly (see ``exact_dtype``), so BLAS matmuls give exact integer results.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def out_size(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dilation: int = 1) -> int:
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


def windows(x: np.ndarray, kh: int, kw: int, stride, padding, dilation=(1, 1), pad_value=0) -> np.ndarray:
    """(N, H, W, C) -> view (N, OH, OW, C, KH, KW) of the (padded) input windows."""
    pt, pb, pl, pr = padding
    if any(padding):
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=pad_value)
    dh, dw = dilation
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))
    return win[:, :: stride[0], :: stride[1], :, ::dh, ::dw]


def accumulator_bound(max_abs_in: int, weights: np.ndarray) -> int:
    """Largest |partial sum| of a convolution with these integer weights (first
    axis: output channels): max|input| * max over outputs of sum|weights|."""
    w = np.abs(np.asarray(weights, dtype=np.int64)).reshape(len(weights), -1)
    return max_abs_in * int(w.sum(axis=1).max())


def exact_dtype(max_abs_in: int, weights: np.ndarray):
    """The narrowest float dtype in which the convolution is exact: floats add
    integers exactly while every partial sum stays below 2^24 (float32) or 2^53."""
    bound = accumulator_bound(max_abs_in, weights)
    if bound < 2**24:
        return np.float32
    if bound < 2**53:
        return np.float64
    raise OverflowError(f"accumulator bound {bound} exceeds exact float64 range")


def conv2d(x: np.ndarray, w: np.ndarray, stride, padding, dilation, groups: int, dtype=np.float32) -> np.ndarray:
    """NHWC convolution without bias. x: (N, H, W, Cin); w: OHWI (Cout, KH, KW, Cin/groups)."""
    n = x.shape[0]
    cout, kh, kw, cin_g = w.shape
    cin = x.shape[3]
    if cin != cin_g * groups:
        raise ValueError(f"conv2d: input has {cin} channels, weight expects {cin_g} x {groups} groups")
    win = windows(x.astype(dtype, copy=False), kh, kw, stride, padding, dilation)
    oh, ow = win.shape[1], win.shape[2]
    cout_g = cout // groups
    wd = w.astype(dtype, copy=False)
    if groups == 1:
        cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * cin)
        out = cols @ wd.reshape(cout, -1).T
        return out.reshape(n, oh, ow, cout)
    if cin_g == 1 and cout_g == 1:  # depthwise, multiplier 1
        # win: (N, OH, OW, C, KH, KW); w: (C, KH, KW, 1)
        return np.einsum("nhwcij,cij->nhwc", win, wd[..., 0], optimize=True)
    outs = []
    for g in range(groups):
        wg = win[:, :, :, g * cin_g:(g + 1) * cin_g]
        cols = wg.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * cin_g)
        outs.append(cols @ wd[g * cout_g:(g + 1) * cout_g].reshape(cout_g, -1).T)
    return np.concatenate(outs, axis=1).reshape(n, oh, ow, cout)
