"""Bit packing of n-bit codes, LSB-first (docs/spec.md, section 2.1)."""
from __future__ import annotations

import numpy as np


def plane_bytes(count: int, bits: int) -> int:
    """Bytes taken by `count` codes of `bits` bits."""
    return (count * bits + 7) // 8


def pack(codes: np.ndarray, bits: int) -> bytes:
    """Pack integer codes (signed or unsigned) into an LSB-first bit stream."""
    if not 1 <= bits <= 16:
        raise ValueError(f"code width {bits} is outside 1..16 bits")
    flat = np.asarray(codes, dtype=np.int64).ravel() & ((1 << bits) - 1)
    bit_matrix = (flat[:, None] >> np.arange(bits)) & 1
    return np.packbits(bit_matrix.astype(np.uint8).ravel(), bitorder="little").tobytes()


def unpack(data: bytes, count: int, bits: int, signed: bool) -> np.ndarray:
    """Inverse of `pack`: the first `count` codes, sign-extended when `signed`."""
    if len(data) < plane_bytes(count, bits):
        raise ValueError(f"{len(data)} bytes cannot hold {count} codes of {bits} bits")
    stream = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    bit_matrix = stream[: count * bits].reshape(count, bits).astype(np.int64)
    values = (bit_matrix << np.arange(bits)).sum(axis=1)
    if signed:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    return values
