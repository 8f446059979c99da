"""NumPy executor of a ``TFLiteGraph`` that reproduces TFLite's reference int8 kernels bit for bit.

The arithmetic is specified in ``docs/spec_tflite.md`` (the C backend will
implement the same text). It mirrors the kernels the LiteRT interpreter runs
with ``OpResolverType.BUILTIN_REF`` (TFLite's default double-rounding build,
``TFLITE_SINGLE_ROUNDING`` off):

* CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED: int32 accumulation of
  ``w * (x - zp_x)`` plus the int32 bias, then
  ``MultiplyByQuantizedMultiplier`` (SaturatingRoundingDoublingHighMul, then
  RoundingDivideByPOT), plus the output zero point, clamped to the fused
  activation's range;
* ADD: both inputs shifted left by 20, rescaled with their own multipliers,
  summed, rescaled again (TFLite's general 8-bit ADD);
* AVERAGE_POOL_2D: sum of the valid (non-padded) raw values, divided by their
  count rounding half away from zero; MAX_POOL_2D over the valid values;
* MEAN: reference ``QuantizedMeanOrSum`` (sum of ``x - zp``, multiplier
  absorbing ``1/count``);
* SOFTMAX: the reference gemmlowp fixed-point softmax (exp in Q5.26,
  accumulation in Q12.19, reciprocal by Newton-Raphson);
* PAD with the output zero point; RESHAPE, TILE and CONCATENATION copy;
* QUANTIZE (int8 -> int8): reference ``Requantize``, ``x - zp_x`` through
  ``MultiplyByQuantizedMultiplier`` of ``s_x / s_y`` (in double), plus
  ``zp_y``, clamped;
* SUB: ADD with the second input's multiplier negated; MUL: the product of
  the offset inputs through ``MultiplyByQuantizedMultiplier``;
* RELU, RELU6, LEAKY_RELU: ``x - zp`` rescaled (by alpha's multiplier where
  negative) and clamped; HARD_SWISH in int16 fixed point; LOGISTIC and TANH
  through TFLite's 256-entry float32 lookup table;
* TRANSPOSE_CONV: per-channel requantization of the scattered int32 sums;
  RESIZE_NEAREST_NEIGHBOR (float32 source indices), RESIZE_BILINEAR (Q10
  positions, one rounding of the Q20 sum) and DEPTH_TO_SPACE on raw values.

All values are held in int64 arrays; wherever the C kernels compute in int32,
the result is wrapped to int32 exactly as two's-complement hardware does.
Everything is vectorized over the batch.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dqa_mcu.frontends.tflite_import import (TFLiteGraph, TOp, UnsupportedTFLiteOpError, geometry, load_tflite,
                                             refuse_activation_shapes, tf_same_padding)
from dqa_mcu.npconv import conv2d, windows

__all__ = ["TFLiteReference", "run_tflite_reference", "run_litert_interpreter",
           "quantize_multiplier", "multiply_by_quantized_multiplier", "saturating_rounding_doubling_high_mul",
           "rounding_divide_by_pot", "round_half_away", "activation_range", "tf_same_padding", "geometry",
           "quantize_input", "softmax_params",
           "softmax_int8"]

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


# --------------------------------------------------------------------------- integer primitives

def wrap32(x):
    """Two's-complement wrap of int64 values to int32 (a no-op when they already fit)."""
    x = np.asarray(x, np.int64)
    if x.size and (x.min() < INT32_MIN or x.max() > INT32_MAX):
        return ((x + 2 ** 31) & 0xFFFFFFFF) - 2 ** 31
    return x


def _trunc_div_pow2(x: np.ndarray, bits: int) -> np.ndarray:
    """C's ``x / 2**bits`` (truncation toward zero) on int64."""
    q = x >> bits
    q += (x < 0) & ((x & ((1 << bits) - 1)) != 0)
    return q


def saturating_rounding_doubling_high_mul(a, b, bits: int = 32) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul (ARM VQRDMULH) on int32 values (``bits=16``: on int16).

    ``(a * b + nudge) / 2**(bits-1)`` with C's truncating division, nudge ``2**(bits-2)`` for a
    non-negative product and ``1 - 2**(bits-2)`` for a negative one; ``a == b == -2**(bits-1)``
    saturates to ``2**(bits-1) - 1``.
    """
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    lowest = -(1 << (bits - 1))
    ab = a * b
    ab += (1 << (bits - 2)) - (ab < 0) * ((1 << (bits - 1)) - 1)
    res = _trunc_div_pow2(ab, bits - 1)
    if np.any(b == lowest):
        res = np.where((a == b) & (a == lowest), -lowest - 1, res)
    return res


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: ``x / 2**exponent`` rounded half away from zero."""
    x = np.asarray(x, np.int64)
    e = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier(int32 x, int32 M, int shift)``, double rounding.

    ``shift > 0`` multiplies ``x`` by ``2**shift`` first (in int32), ``shift < 0``
    divides the high product by ``2**-shift`` with RoundingDivideByPOT.
    """
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = wrap32(np.asarray(x, np.int64) * (np.int64(1) << left))
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), right)


def _round_half_away(v: float) -> int:
    """C's std::round / TfLiteRound on a double."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier(double)``: ``real ~= M * 2**(shift - 31)``, M in [2**30, 2**31)."""
    real = float(real)
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def round_half_away(v: np.ndarray) -> np.ndarray:
    """C's round() on float64 arrays (half away from zero), exactly; returns int64."""
    v = np.asarray(v, np.float64)
    r = np.trunc(v)
    return (r + np.sign(v) * (np.abs(v - r) >= 0.5)).astype(np.int64)


def quantize_input(graph: TFLiteGraph, x: np.ndarray) -> np.ndarray:
    """Real input values (e.g. uint8 pixels) -> the model's int8 input, as TFLite's QUANTIZE:
    ``zero_point + round(x / scale)`` (float32 division, ties away from zero), clamped to int8."""
    t = graph.input
    q = round_half_away(np.asarray(x, np.float32) / np.float32(t.scale[0])) + int(t.zero_point[0])
    return np.clip(q, -128, 127).astype(np.int8)


def _quantize_f32(value: float, scale, zero_point: int) -> int:
    """``zero_point + (int)TfLiteRound(value / scale)`` computed in float32, as TFLite does."""
    v = np.float32(value) / np.float32(scale)
    return int(zero_point) + _round_half_away(float(v))


def activation_range(act: str, scale, zero_point: int) -> tuple[int, int]:
    """TFLite ``CalculateActivationRangeQuantized`` for an int8 output."""
    lo, hi = -128, 127
    if act == "RELU":
        lo = max(lo, _quantize_f32(0.0, scale, zero_point))
    elif act == "RELU6":
        lo = max(lo, _quantize_f32(0.0, scale, zero_point))
        hi = min(hi, _quantize_f32(6.0, scale, zero_point))
    elif act == "RELU_N1_TO_1":
        lo = max(lo, _quantize_f32(-1.0, scale, zero_point))
        hi = min(hi, _quantize_f32(1.0, scale, zero_point))
    elif act != "NONE":
        raise ValueError(f"unknown fused activation {act!r}")
    return lo, hi


# --------------------------------------------------------------------------- softmax (gemmlowp fixed point)

def _sat_shl(x: np.ndarray, e: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT<e> for e > 0 on int32."""
    threshold = (1 << (31 - e)) - 1
    res = wrap32(x << e)
    res = np.where(x > threshold, INT32_MAX, res)
    return np.where(x < -threshold, INT32_MIN, res)


def _fp_mul(a, b):
    return saturating_rounding_doubling_high_mul(a, b)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    constant_term = 1895147668            # exp(-1/8) in Q0.31
    constant_1_over_3 = 715827883         # 1/3 in Q0.31
    x = wrap32(a + (1 << 28))             # a + 1/8
    x2 = _fp_mul(x, x)
    x3 = _fp_mul(x2, x)
    x4 = _fp_mul(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(wrap32(_fp_mul(wrap32(x4_over_4 + x3), constant_1_over_3) + x2), 1)
    return wrap32(constant_term + _fp_mul(constant_term, wrap32(x + poly)))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values_q5_26(a: np.ndarray) -> np.ndarray:
    """gemmlowp exp_on_negative_values for FixedPoint<int32, 5> input; result in Q0.31."""
    frac_bits, int_bits = 26, 5
    one_quarter = 1 << (frac_bits - 2)
    mask = one_quarter - 1
    a_mod = wrap32((a & mask) - one_quarter)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(_sat_shl(a_mod, int_bits))
    remainder = wrap32(a_mod - a)
    for exponent, multiplier in _EXP_BARREL:
        if int_bits > exponent:
            bit = 1 << (frac_bits + exponent)
            result = np.where((remainder & bit) != 0, _fp_mul(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    s = a + INT32_MAX                      # RoundingHalfSum(a, F0::One())
    half_denominator = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))
    constant_48_over_17 = 1515870810      # Q2.29
    constant_neg_32_over_17 = -1010580540  # Q2.29
    x = wrap32(constant_48_over_17 + _fp_mul(half_denominator, constant_neg_32_over_17))
    one_f2 = 1 << 29                       # F2::One(), Q2.29
    for _ in range(3):
        half_denominator_times_x = _fp_mul(half_denominator, x)
        one_minus = wrap32(one_f2 - half_denominator_times_x)
        x = wrap32(x + _sat_shl(_fp_mul(x, one_minus), 2))
    return _sat_shl(x, 1)


def _count_leading_zeros32(x: np.ndarray) -> np.ndarray:
    v = np.asarray(x, np.int64) & 0xFFFFFFFF
    bits = np.zeros(v.shape, np.int64)
    for s in (16, 8, 4, 2, 1):
        m = v >= (np.int64(1) << s)
        bits += m * s
        v = np.where(m, v >> s, v)
    bits += v > 0
    return 32 - bits


def softmax_params(beta: float, input_scale) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, diff_min) of the reference int8 SOFTMAX.

    PreprocessSoftmaxScaling(beta, scale, 5): ``min(beta * scale * 2**26, 2**31 - 1)``
    in double, QuantizeMultiplierGreaterThanOne; ``diff_min = -CalculateInputRadius(5,
    shift) = -floor(31 * 2**26 / 2**shift)``.
    """
    real = min(float(np.float32(beta)) * float(np.float32(input_scale)) * float(1 << 26), (1 << 31) - 1.0)
    if real <= 1.0:
        raise UnsupportedTFLiteOpError(f"SOFTMAX: beta x input scale = {real / (1 << 26)!r} is too small")
    m, shift = quantize_multiplier(real)
    radius = math.floor(((1 << 5) - 1) * float(1 << (31 - 5)) / float(1 << shift))
    return m, shift, -radius


def softmax_int8(x: np.ndarray, multiplier: int, left_shift: int, diff_min: int) -> np.ndarray:
    """Reference int8 softmax along the last axis; output scale 1/256, zero point -128."""
    x = np.asarray(x, np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    valid = diff >= diff_min
    rescaled = saturating_rounding_doubling_high_mul(wrap32(diff * (1 << left_shift)), multiplier)
    exp = exp_on_negative_values_q5_26(np.where(valid, rescaled, 0))
    sum_of_exps = wrap32(np.where(valid, rounding_divide_by_pot(exp, 12), 0).sum(axis=-1, keepdims=True))
    headroom_plus_one = _count_leading_zeros32(sum_of_exps)
    num_bits_over_unit = 12 - headroom_plus_one
    shifted_sum_minus_one = wrap32(((sum_of_exps << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    shifted_scale = _one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one)
    exponent = num_bits_over_unit + 31 - 8
    out = rounding_divide_by_pot(_fp_mul(shifted_scale, exp), exponent) - 128
    return np.where(valid, np.clip(out, -128, 127), -128)


# --------------------------------------------------------------------------- element-wise helpers

def _float32_multiplier(numerator, denominator) -> tuple[int, int]:
    """QuantizeMultiplier of a ratio the kernel computes in float32 (``float / float``, then widened)."""
    return quantize_multiplier(float(np.float32(numerator) / np.float32(denominator)))


@functools.lru_cache(maxsize=None)
def _libm_function(name: str) -> Callable[[float], float]:
    """The C library's float32 function (``expf``, ``tanhf``): what the interpreter's lookup tables call."""
    import ctypes
    import ctypes.util

    fn = getattr(ctypes.CDLL(ctypes.util.find_library("m") or None), name)
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return fn


def _logistic_f32(v: np.float32) -> np.float32:
    return np.float32(1.0) / (np.float32(1.0) + np.float32(_libm_function("expf")(float(-v))))


def _tanh_f32(v: np.float32) -> np.float32:
    return np.float32(_libm_function("tanhf")(float(v)))


def lookup_table(transform: Callable[[np.float32], np.float32], in_scale, in_zero_point: int, out_scale,
                 out_zero_point: int) -> np.ndarray:
    """TFLite's ``LUTPopulate`` for int8 (spec 3.17): entry ``q + 128`` is the output for the input ``q``,
    everything in float32."""
    inverse_scale = np.float32(1.0) / np.float32(out_scale)
    table = np.empty(256, np.int64)
    for q in range(-128, 128):
        dequantized = np.float32(in_scale) * np.float32(q - in_zero_point)
        transformed = transform(dequantized)
        quantized = -128
        if np.isfinite(transformed):
            quantized = _round_half_away(float(np.float32(transformed * inverse_scale))) + out_zero_point
        table[q + 128] = min(max(quantized, -128), 127)
    return table


def _downscale_multiplier_to_int16(m: int) -> int:
    """TFLite ``DownScaleInt32ToInt16Multiplier``: a Q31 multiplier rounded to Q15."""
    return 32767 if m >= INT32_MAX - (1 << 15) else (m + (1 << 15)) >> 16


def hard_swish_params(in_scale, in_zero_point: int, out_scale, out_zero_point: int) -> dict:
    """HARD_SWISH's int16 multipliers (spec 3.14), computed in float32 as the kernel's Prepare does."""
    hires_scale = np.float32(1.0 / 128.0) * np.float32(in_scale)
    out_m, out_exp = _float32_multiplier(hires_scale, out_scale)
    relu_m, relu_exp = _float32_multiplier(hires_scale, np.float32(3.0 / 32768.0))
    return dict(input_zero_point=in_zero_point, output_zero_point=out_zero_point,
                output_multiplier=_downscale_multiplier_to_int16(out_m), output_exponent=out_exp,
                reluish_multiplier=_downscale_multiplier_to_int16(relu_m), reluish_exponent=relu_exp)


def _saturate16(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -(1 << 15), (1 << 15) - 1)


def hard_swish_int8(x: np.ndarray, p: dict) -> np.ndarray:
    """Reference int8 HARD_SWISH: x * relu6(x + 3) / 6 in int16 fixed point (spec 3.14)."""
    hires = (np.asarray(x, np.int64) - p["input_zero_point"]) * (1 << 7)
    preshift = saturating_rounding_doubling_high_mul(hires, p["output_multiplier"], bits=16)
    reluish = hires
    if p["reluish_exponent"] > 0:  # all but the last bit of the left shift first, saturating
        reluish = _saturate16(reluish * (1 << (p["reluish_exponent"] - 1)))
    reluish = saturating_rounding_doubling_high_mul(reluish, p["reluish_multiplier"], bits=16)
    if p["reluish_exponent"] > 0:
        reluish = _saturate16(reluish * 2)
    elif p["reluish_exponent"] < 0:
        reluish = rounding_divide_by_pot(reluish, -p["reluish_exponent"])
    reluish = (reluish + (1 << 15)) >> 1  # [-1, 1] -> [0, 1] in Q0.15
    # SaturatingDoublingHighMul: truncating, not rounding (the int16 -2^15 * -2^15 case cannot occur: reluish >= 0)
    product = _trunc_div_pow2(reluish * preshift, 15)
    out = rounding_divide_by_pot(product, -p["output_exponent"]) + p["output_zero_point"]
    return np.clip(out, -128, 127)


def nearest_neighbor_index(out_size: int, in_size: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """TFLite ``GetNearestNeighbor`` for every output position (float32 arithmetic, spec 3.12)."""
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    offset = np.float32(0.5 if half_pixel_centers else 0.0)
    index = []
    for i in range(out_size):
        v = np.float32(np.float32(i) + offset) * scale
        j = _round_half_away(float(v)) if align_corners else math.floor(float(v))
        j = min(j, in_size - 1)
        index.append(max(j, 0) if half_pixel_centers else j)
    return np.array(index, np.int64)


def bilinear_scale_10(out_size: int, in_size: int, align_corners: bool) -> int:
    """The Q10 input step per output step of ``ResizeBilinearInteger`` (spec 3.13)."""
    if align_corners and out_size > 1:
        return ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    return ((1 << 10) * in_size + out_size // 2) // out_size


def bilinear_taps(out_size: int, in_size: int, scale_10: int, half_pixel_centers: bool):
    """(lower index, upper index, Q10 position) per output position, as ``ComputeInterpolationValuesInteger``."""
    i = np.arange(out_size, dtype=np.int64)
    pos = i * scale_10 + (scale_10 // 2 - (1 << 9) if half_pixel_centers else 0)
    lower = np.maximum(_trunc_div_pow2(pos, 10), 0)  # C division
    upper = np.minimum(_trunc_div_pow2(pos + (1 << 10) - 1, 10), in_size - 1)
    return lower, upper, pos


# --------------------------------------------------------------------------- per-op parameters

@dataclass
class OpParams:
    """Integer parameters of one op, as the reference (and later the C backend) uses them."""
    op: str
    index: int
    values: dict = field(default_factory=dict)


def _prepare(g: TFLiteGraph, op: TOp) -> OpParams:
    t = g.tensors
    p: dict = {}
    if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
        # TRANSPOSE_CONV's operands: output shape, weights, input, bias
        data_index, bias_index = (2, 3) if op.op == "TRANSPOSE_CONV" else (0, 2)
        x, w, y = t[op.inputs[data_index]], t[op.inputs[1]], t[op.outputs[0]]
        s_in, s_out = np.float32(x.scale[0]), np.float32(y.scale[0])
        n_out = w.shape[3] if op.op == "DEPTHWISE_CONV_2D" else w.shape[0]
        # double(s_in) * double(s_w) / double(s_out), per output channel (a per-tensor weight
        # scale is broadcast), as PopulateConvolutionQuantizationParams does
        ws = np.broadcast_to(w.scale.astype(np.float32), (n_out,))
        real = [float(s_in) * float(sw) / float(s_out) for sw in ws]
        p["effective_scale"] = np.array(real, np.float64)  # FULLY_CONNECTED scales in double
        ms = [quantize_multiplier(r) for r in real]
        p["multiplier"] = np.array([m for m, _ in ms], np.int64)
        p["shift"] = np.array([s for _, s in ms], np.int64)
        if p["shift"].max() > 31:  # MBQM's x * 2^left in int32; the C runtime stores shifts as int8
            raise UnsupportedTFLiteOpError(f"{op.op} at index {op.index}: a rescaling factor of 2^31 or more "
                                           f"(input scale x weight scale / output scale)")
        p["input_offset"] = -int(x.zero_point[0])
        p["output_offset"] = int(y.zero_point[0])
        p["act_min"], p["act_max"] = activation_range(op.options["activation"], y.scale[0], int(y.zero_point[0]))
        has_bias = len(op.inputs) > bias_index and op.inputs[bias_index] >= 0
        p["bias"] = t[op.inputs[bias_index]].data.astype(np.int64) if has_bias else np.zeros(n_out, np.int64)
        if op.op == "DEPTHWISE_CONV_2D":  # (1, KH, KW, C*m) -> OHWI (C*m, KH, KW, 1), groups = C
            p["weight"] = w.data[0].transpose(2, 0, 1)[..., None].astype(np.int64)
        else:  # OHWI, or (C_out, C_in) for FULLY_CONNECTED
            p["weight"] = w.data.astype(np.int64)
        if op.op == "TRANSPOSE_CONV":
            # the padding of the convolution that maps the output back to the input (the extra pixel after)
            (_, oh, ow, _), (kh, kw) = y.shape, w.shape[1:3]
            _, _, pad = geometry(op.options["padding"], oh, ow, kh, kw, op.options["stride"])
            p["pad_top"], p["pad_left"] = pad[0], pad[2]
    elif op.op in ("ADD", "SUB"):
        a, b, y = t[op.inputs[0]], t[op.inputs[1]], t[op.outputs[0]]
        left_shift = 20
        sa, sb, sy = float(a.scale[0]), float(b.scale[0]), float(y.scale[0])
        twice_max = 2 * max(sa, sb)
        p.update(left_shift=left_shift, input1_offset=-int(a.zero_point[0]), input2_offset=-int(b.zero_point[0]),
                 output_offset=int(y.zero_point[0]))
        p["input1_multiplier"], p["input1_shift"] = quantize_multiplier(sa / twice_max)
        p["input2_multiplier"], p["input2_shift"] = quantize_multiplier(sb / twice_max)
        p["output_multiplier"], p["output_shift"] = quantize_multiplier(twice_max / (float(1 << left_shift) * sy))
        if max(p["input1_shift"], p["input2_shift"], p["output_shift"]) > 0:  # TFLite's Prepare refuses it too
            raise UnsupportedTFLiteOpError(f"{op.op} at index {op.index}: a rescaling factor >= 1")
        if p["output_shift"] > -1:  # the C runtime's one rounding (spec 2) needs a right shift
            raise UnsupportedTFLiteOpError(f"{op.op} at index {op.index}: an output scale 2^18 times finer than "
                                           f"its inputs' or more (output rescale shift {p['output_shift']} > -1)")
        if op.op == "SUB":  # TFLite runs SUB as ADD with the second input's multiplier negated
            p["input2_multiplier"] = -p["input2_multiplier"]
        p["act_min"], p["act_max"] = activation_range(op.options["activation"], y.scale[0], int(y.zero_point[0]))
    elif op.op == "MUL":
        a, b, y = t[op.inputs[0]], t[op.inputs[1]], t[op.outputs[0]]
        p.update(input1_offset=-int(a.zero_point[0]), input2_offset=-int(b.zero_point[0]),
                 output_offset=int(y.zero_point[0]))
        # s_a * s_b / s_y in float32 (then widened), as the kernel's Prepare computes it
        p["output_multiplier"], p["output_shift"] = _float32_multiplier(
            np.float32(a.scale[0]) * np.float32(b.scale[0]), y.scale[0])
        p["act_min"], p["act_max"] = activation_range(op.options["activation"], y.scale[0], int(y.zero_point[0]))
    elif op.op in ("LEAKY_RELU", "RELU", "RELU6", "QUANTIZE"):
        x, y = t[op.inputs[0]], t[op.outputs[0]]
        p.update(input_zero_point=int(x.zero_point[0]), output_zero_point=int(y.zero_point[0]))
        if op.op == "QUANTIZE":  # Requantize: s_x / s_y in double (the activations divide in float32)
            p["multiplier"], p["shift"] = quantize_multiplier(float(x.scale[0]) / float(y.scale[0]))
        else:
            p["multiplier"], p["shift"] = _float32_multiplier(x.scale[0], y.scale[0])
        if op.op == "LEAKY_RELU":  # negative inputs: s_x * alpha / s_y, all in float32
            p["alpha_multiplier"], p["alpha_shift"] = _float32_multiplier(
                np.float32(x.scale[0]) * np.float32(op.options["alpha"]), y.scale[0])
            p["act_min"], p["act_max"] = -128, 127
        elif op.op == "QUANTIZE":
            p["act_min"], p["act_max"] = -128, 127
        else:
            p["act_min"], p["act_max"] = activation_range(op.op, y.scale[0], int(y.zero_point[0]))
    elif op.op in ("LOGISTIC", "TANH"):
        x, y = t[op.inputs[0]], t[op.outputs[0]]
        p["table"] = lookup_table(_logistic_f32 if op.op == "LOGISTIC" else _tanh_f32, x.scale[0],
                                  int(x.zero_point[0]), y.scale[0], int(y.zero_point[0]))
    elif op.op == "HARD_SWISH":
        x, y = t[op.inputs[0]], t[op.outputs[0]]
        p.update(hard_swish_params(x.scale[0], int(x.zero_point[0]), y.scale[0], int(y.zero_point[0])))
        if p["output_exponent"] > 0:  # TFLite's Prepare refuses it too
            raise UnsupportedTFLiteOpError(f"HARD_SWISH at index {op.index}: output scale below input scale / 128")
    elif op.op in ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"):
        (_, h, w, _), (_, oh, ow, _) = t[op.inputs[0]].shape, t[op.outputs[0]].shape
        align, half = op.options["align_corners"], op.options["half_pixel_centers"]
        if op.op == "RESIZE_NEAREST_NEIGHBOR":
            p["y_index"] = nearest_neighbor_index(oh, h, align, half)
            p["x_index"] = nearest_neighbor_index(ow, w, align, half)
        else:
            p["scale_10"] = (bilinear_scale_10(oh, h, align), bilinear_scale_10(ow, w, align))
            p["y_taps"] = bilinear_taps(oh, h, p["scale_10"][0], half)
            p["x_taps"] = bilinear_taps(ow, w, p["scale_10"][1], half)
            for axis, n, m, (lower, _, _) in (("height", h, oh, p["y_taps"]), ("width", w, ow, p["x_taps"])):
                if lower.max() >= n:  # TFLite's kernel reads past the input there: undefined
                    raise UnsupportedTFLiteOpError(
                        f"RESIZE_BILINEAR at index {op.index}: resizing the {axis} from {n} to {m} rounds a source "
                        f"position past the input (row or column {int(lower.max())} of {n}), which TFLite's "
                        "integer kernel reads out of bounds")
    elif op.op == "DEPTH_TO_SPACE":
        p["block"] = op.options["block"]
    elif op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        y = t[op.outputs[0]]
        p["act_min"], p["act_max"] = activation_range(op.options["activation"], y.scale[0], int(y.zero_point[0]))
    elif op.op == "MEAN":
        x, y = t[op.inputs[0]], t[op.outputs[0]]
        m, shift = quantize_multiplier(float(x.scale[0]) / float(y.scale[0]))
        axes = sorted({int(a) % len(x.shape) for a in t[op.inputs[1]].data.reshape(-1)})
        if 0 in axes:
            raise UnsupportedTFLiteOpError(f"MEAN at index {op.index}: reduction over the batch axis")
        count = int(np.prod([x.shape[a] for a in axes]))
        # QuantizedMeanOrSum folds 1/count into the multiplier
        s = 63 - _count_leading_zeros64(count)
        s = min(s, 32, 31 + shift)
        p.update(axes=axes, count=count, input_zero_point=int(x.zero_point[0]),
                 output_zero_point=int(y.zero_point[0]), multiplier=int((m << s) // count),
                 shift=shift - s, base_multiplier=m, base_shift=shift)
    elif op.op == "SOFTMAX":
        x = t[op.inputs[0]]
        p["input_multiplier"], p["input_left_shift"], p["diff_min"] = softmax_params(op.options["beta"], x.scale[0])
    elif op.op == "PAD":
        pads = t[op.inputs[1]].data.astype(np.int64).reshape(-1, 2)
        if pads.shape[0] and pads[0].any():
            raise UnsupportedTFLiteOpError(f"PAD at index {op.index}: padding of the batch axis")
        p["paddings"] = pads
        p["pad_value"] = int(t[op.outputs[0]].zero_point[0])
    elif op.op == "CONCATENATION":
        x = t[op.inputs[0]]
        axis = op.options["axis"] % len(x.shape)
        if axis == 0:
            raise UnsupportedTFLiteOpError(f"CONCATENATION at index {op.index}: along the batch axis")
        p["axis"] = axis
    elif op.op == "RESHAPE":
        y = t[op.outputs[0]]
        p["out_shape"] = tuple(y.shape[1:]) if len(y.shape) >= 1 else ()
    elif op.op == "TILE":
        p["multiples"] = tuple(int(m) for m in t[op.inputs[1]].data.reshape(-1))
    return OpParams(op.op, op.index, p)


def _count_leading_zeros64(n: int) -> int:
    return 64 - int(n).bit_length()


# --------------------------------------------------------------------------- executor

def _exact_float(x: np.ndarray, w: np.ndarray):
    """A float dtype in which every partial sum of ``x @ w`` is an exactly represented integer."""
    bound = int(np.abs(x).max(initial=0)) * int(np.abs(w).reshape(len(w), -1).sum(axis=1).max(initial=0))
    if bound < 2 ** 24:
        return np.float32
    if bound < 2 ** 53:
        return np.float64
    raise OverflowError(f"accumulator bound {bound} exceeds the exact float64 range")


class TFLiteReference:
    """Bit-exact NumPy reference of TFLite's int8 reference kernels for one ``TFLiteGraph``."""

    def __init__(self, graph: TFLiteGraph | str):
        if not isinstance(graph, TFLiteGraph):
            graph = load_tflite(graph)
        # the executor runs a batch of inputs along the leading axis: a FULLY_CONNECTED that views
        # a vector as several rows ([10, 64]) has no batch axis of its own
        refuse_activation_shapes(graph, lambda shape: len(shape) >= 2 and shape[0] == 1,
                                 "activations must be [1, ...] (a batch of 1, then at least one axis)")
        self.graph = graph
        # by the op's index in the file, which a folded PAD leaves out of graph.ops
        self.params = {op.index: _prepare(graph, op) for op in graph.ops}

    # ---- kernels
    def _conv(self, op: TOp, p: dict, x: np.ndarray) -> np.ndarray:
        o = op.options
        w = p["weight"]
        n, h, wd, cin = x.shape
        cout, kh, kw, cin_g = w.shape
        groups = cin // cin_g
        oh, ow, pad = geometry(o["padding"], h, wd, kh, kw, o["stride"], o["dilation"])
        xs = x + p["input_offset"]  # zero padding of x - zp == skipping out-of-image taps
        dt = _exact_float(xs, w)
        acc = conv2d(xs, w, o["stride"], pad, o["dilation"], groups, dtype=dt)
        acc = np.rint(acc).astype(np.int64)[:, :oh, :ow, :]
        return self._requant(acc, p)

    def _fc(self, op: TOp, p: dict, x: np.ndarray) -> np.ndarray:
        w = p["weight"]
        depth = w.shape[1]
        xs = x.reshape(-1, depth) + p["input_offset"]
        dt = _exact_float(xs, w)
        acc = np.rint(xs.astype(dt) @ w.astype(dt).T).astype(np.int64)
        # the reference FULLY_CONNECTED rescales in double precision:
        # (int32)round((double)acc * (double)s_in * (double)s_w / (double)s_out)
        acc = wrap32(acc + p["bias"])
        out = round_half_away(acc.astype(np.float64) * p["effective_scale"]) + p["output_offset"]
        out = np.clip(out, p["act_min"], p["act_max"])
        if op.options["keep_num_dims"]:
            return out.reshape(x.shape[:-1] + (w.shape[0],))
        return out

    @staticmethod
    def _requant(acc: np.ndarray, p: dict) -> np.ndarray:
        acc = wrap32(acc + p["bias"])
        acc = multiply_by_quantized_multiplier(acc, p["multiplier"], p["shift"]) + p["output_offset"]
        return np.clip(acc, p["act_min"], p["act_max"])

    @staticmethod
    def _add(p: dict, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        sh = 1 << p["left_shift"]
        a = wrap32((a + p["input1_offset"]) * sh)
        b = wrap32((b + p["input2_offset"]) * sh)
        a = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(a, p["input1_multiplier"]),
                                   -p["input1_shift"])
        b = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(b, p["input2_multiplier"]),
                                   -p["input2_shift"])
        s = wrap32(a + b)
        out = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(s, p["output_multiplier"]),
                                     -p["output_shift"]) + p["output_offset"]
        return np.clip(out, p["act_min"], p["act_max"])

    @staticmethod
    def _mul(p: dict, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        product = wrap32((a + p["input1_offset"]) * (b + p["input2_offset"]))
        out = multiply_by_quantized_multiplier(product, p["output_multiplier"], p["output_shift"]) + \
            p["output_offset"]
        return np.clip(out, p["act_min"], p["act_max"])

    @staticmethod
    def _rescale_activation(op: TOp, p: dict, x: np.ndarray) -> np.ndarray:
        """RELU, RELU6, LEAKY_RELU and QUANTIZE: x - z_x rescaled to the output (by alpha too if negative),
        clamped."""
        v = x - p["input_zero_point"]
        out = multiply_by_quantized_multiplier(v, p["multiplier"], p["shift"])
        if op.op == "LEAKY_RELU":
            out = np.where(v >= 0, out, multiply_by_quantized_multiplier(v, p["alpha_multiplier"], p["alpha_shift"]))
        return np.clip(out + p["output_zero_point"], p["act_min"], p["act_max"])

    @staticmethod
    def _resize_bilinear(p: dict, x: np.ndarray) -> np.ndarray:
        (y0, y1, py), (x0, x1, px) = p["y_taps"], p["x_taps"]
        one = 1 << 10
        wy = (py - one * y0)[None, :, None, None]    # weight of the lower row's neighbour below, Q10
        wx = (px - one * x0)[None, None, :, None]
        rows0, rows1 = x[:, y0], x[:, y1]
        # the four products in the kernel's order, then one division by 2^20 rounding half away from zero
        acc = (rows0[:, :, x0] * (one - wy) * (one - wx) + rows1[:, :, x0] * wy * (one - wx)
               + rows0[:, :, x1] * (one - wy) * wx + rows1[:, :, x1] * wy * wx)
        return _trunc_div_pow2(acc + np.where(acc > 0, 1 << 19, -(1 << 19)), 20)

    @staticmethod
    def _depth_to_space(p: dict, x: np.ndarray) -> np.ndarray:
        n, h, w, c = x.shape
        b = p["block"]
        return x.reshape(n, h, w, b, b, c // (b * b)).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * b, w * b, -1)

    def _transpose_conv(self, op: TOp, p: dict, x: np.ndarray) -> np.ndarray:
        """Scatter form: input pixel (iy, ix) adds w[:, ky, kx, :] @ x to output (iy * s + ky - pad, ...)."""
        w = p["weight"]
        n, h, wd, cin = x.shape
        cout, kh, kw, _ = w.shape
        sh, sw = op.options["stride"]
        _, oh, ow, _ = self.graph.tensors[op.outputs[0]].shape
        xs = x + p["input_offset"]
        dt = _exact_float(xs, w.transpose(0, 3, 1, 2).reshape(cout, -1))
        taps = np.einsum("nhwi,oyxi->nhwyxo", xs.astype(dt), w.astype(dt))
        full = np.zeros((n, (h - 1) * sh + kh, (wd - 1) * sw + kw, cout), np.int64)
        for ky in range(kh):
            for kx in range(kw):
                full[:, ky:ky + (h - 1) * sh + 1:sh, kx:kx + (wd - 1) * sw + 1:sw] += \
                    np.rint(taps[:, :, :, ky, kx]).astype(np.int64)
        top, left = p["pad_top"], p["pad_left"]
        acc = np.zeros((n, oh, ow, cout), np.int64)  # output pixels no input reaches keep a zero sum
        part = full[:, top:top + oh, left:left + ow]
        acc[:, :part.shape[1], :part.shape[2]] = part
        return self._requant(acc, p)

    @staticmethod
    def _pool(op: TOp, p: dict, x: np.ndarray) -> np.ndarray:
        o = op.options
        kh, kw = o["filter"]
        n, h, w, c = x.shape
        oh, ow, pad = geometry(o["padding"], h, w, kh, kw, o["stride"])
        if op.op == "MAX_POOL_2D":
            out = windows(x, kh, kw, o["stride"], pad, pad_value=-129).max(axis=(4, 5))
        else:
            s = windows(x, kh, kw, o["stride"], pad).sum(axis=(4, 5), dtype=np.int64)
            ones = np.ones((1, h, w, 1), np.int64)
            cnt = windows(ones, kh, kw, o["stride"], pad).sum(axis=(4, 5), dtype=np.int64)
            half = cnt // 2
            out = np.sign(s) * ((np.abs(s) + half) // cnt)
        return np.clip(out[:, :oh, :ow, :], p["act_min"], p["act_max"])

    @staticmethod
    def _mean(p: dict, x: np.ndarray, keep_dims: bool) -> np.ndarray:
        axes = tuple(p["axes"])
        s = wrap32(x.sum(axis=axes, keepdims=keep_dims, dtype=np.int64))
        shifted = wrap32(s - p["input_zero_point"] * p["count"])
        out = multiply_by_quantized_multiplier(shifted, p["multiplier"], p["shift"]) + p["output_zero_point"]
        return np.clip(out, -128, 127)

    def _run_op(self, op: TOp, p: dict, env: dict[int, np.ndarray]) -> np.ndarray:
        x = env[op.inputs[0]]
        if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return self._conv(op, p, x)
        if op.op == "FULLY_CONNECTED":
            return self._fc(op, p, x)
        if op.op in ("ADD", "SUB"):
            return self._add(p, x, env[op.inputs[1]])
        if op.op == "MUL":
            return self._mul(p, x, env[op.inputs[1]])
        if op.op in ("RELU", "RELU6", "LEAKY_RELU", "QUANTIZE"):
            return self._rescale_activation(op, p, x)
        if op.op in ("LOGISTIC", "TANH"):
            return p["table"][x + 128]
        if op.op == "HARD_SWISH":
            return hard_swish_int8(x, p)
        if op.op == "RESIZE_NEAREST_NEIGHBOR":
            return x[:, p["y_index"]][:, :, p["x_index"]]
        if op.op == "RESIZE_BILINEAR":
            return self._resize_bilinear(p, x)
        if op.op == "DEPTH_TO_SPACE":
            return self._depth_to_space(p, x)
        if op.op == "TRANSPOSE_CONV":
            return self._transpose_conv(op, p, env[op.inputs[2]])
        if op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            return self._pool(op, p, x)
        if op.op == "MEAN":
            return self._mean(p, x, op.options["keep_dims"])
        if op.op == "SOFTMAX":
            return softmax_int8(x, p["input_multiplier"], p["input_left_shift"], p["diff_min"])
        if op.op == "RESHAPE":
            return x.reshape((x.shape[0],) + p["out_shape"])
        if op.op == "TILE":  # the batch's multiple is 1 (activations are [1, ...])
            return np.tile(x, p["multiples"])
        if op.op == "PAD":
            return np.pad(x, [tuple(r) for r in p["paddings"]], constant_values=p["pad_value"])
        if op.op == "CONCATENATION":
            return np.concatenate([env[i] for i in op.inputs], axis=p["axis"])
        raise UnsupportedTFLiteOpError(f"operator {op.op} at index {op.index} has no reference kernel")

    def run(self, x_int8: np.ndarray, batch_size: int = 256,
            collect: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
        """Run the graph on int8 inputs of shape ``(N,) + input.shape[1:]``; returns the int8 output.

        ``collect(tensor_index, int8_array)`` is called for every tensor an op
        produces, once per batch.
        """
        g = self.graph
        x_all = np.asarray(x_int8)
        want = tuple(g.input.shape[1:])
        if x_all.shape[1:] != want:
            if x_all.shape == want:
                x_all = x_all[None]
            else:
                raise ValueError(f"input of shape {x_all.shape}, the model expects (N,) + {want}")
        if x_all.dtype != np.int8:
            if x_all.min(initial=0) < -128 or x_all.max(initial=0) > 127:
                raise ValueError("input values outside int8")
        consts = {t.index: t.data.astype(np.int64) for t in g.tensors if t.is_const}
        last_use: dict[int, int] = {}
        for i, op in enumerate(g.ops):
            for t in op.inputs:
                last_use[t] = i
        outs = []
        for start in range(0, x_all.shape[0], batch_size):
            env: dict[int, np.ndarray] = dict(consts)
            env[g.inputs[0]] = x_all[start:start + batch_size].astype(np.int64)
            for i, op in enumerate(g.ops):
                y = self._run_op(op, self.params[op.index].values, env)
                env[op.outputs[0]] = y
                if collect is not None:
                    collect(op.outputs[0], y.astype(np.int8))
                for t in op.inputs:
                    if last_use.get(t) == i and t not in consts and t not in g.outputs:
                        env.pop(t, None)
            outs.append(env[g.outputs[0]].astype(np.int8))
        return np.concatenate(outs, axis=0)


def run_tflite_reference(model, x_int8: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Convenience: ``TFLiteReference(model).run(x_int8)`` for a path or a ``TFLiteGraph``."""
    return TFLiteReference(model).run(x_int8, batch_size=batch_size)


def run_litert_interpreter(path, x_int8: np.ndarray, kernels: str = "reference", batch_size: int = 256,
                           preserve_all_tensors: bool = False):
    """Run the LiteRT interpreter (``ai_edge_litert``) on int8 inputs, batch by batch.

    ``kernels='reference'`` uses ``OpResolverType.BUILTIN_REF`` (TFLite's
    reference kernels, what ``TFLiteReference`` reproduces); ``'optimized'``
    the default kernels. Returns the int8 output ``(N, ...)``.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = {"reference": OpResolverType.BUILTIN_REF, "optimized": OpResolverType.AUTO}[kernels]
    it = Interpreter(model_path=str(path), experimental_op_resolver_type=resolver,
                     experimental_preserve_all_tensors=preserve_all_tensors)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x_all = np.asarray(x_int8, np.int8)
    results = []
    cur = None
    for start in range(0, x_all.shape[0], batch_size):
        xb = x_all[start:start + batch_size]
        if cur != xb.shape[0]:
            it.resize_tensor_input(inp["index"], [xb.shape[0]] + list(inp["shape"][1:]))
            it.allocate_tensors()
            cur = xb.shape[0]
        it.set_tensor(inp["index"], xb)
        it.invoke()
        results.append(it.get_tensor(out["index"]).copy())
    return np.concatenate(results, axis=0)
