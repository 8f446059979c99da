"""Canonical, length-limited Huffman codes for DQA shifting errors.

docs/spec.md, section 2.2. Built offline from calibration counts; the
firmware only decodes with a 256-entry table (`decode_table`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HUFF_MAX_LEN = 8
TABLE_BITS = HUFF_MAX_LEN


def limited_lengths(counts, max_len: int = HUFF_MAX_LEN) -> list[int]:
    """Optimal code lengths with every length <= max_len (package-merge).

    Every symbol gets a code: counts are raised to at least 1 first, because
    a symbol unseen in calibration can still occur at run time.
    """
    weights = [max(int(c), 1) for c in counts]
    n = len(weights)
    if n > 1 << max_len:
        raise ValueError(f"{n} symbols cannot be coded in {max_len} bits")
    if n == 1:
        return [1]
    leaves = sorted((w, (s,)) for s, w in enumerate(weights))
    packages = list(leaves)
    for _ in range(max_len - 1):
        pairs = [(packages[i][0] + packages[i + 1][0], packages[i][1] + packages[i + 1][1])
                 for i in range(0, len(packages) - 1, 2)]
        packages = sorted(leaves + pairs, key=lambda p: p[0])
    lengths = [0] * n
    for _, symbols in packages[: 2 * n - 2]:
        for s in symbols:
            lengths[s] += 1
    return lengths


def canonical_codes(lengths) -> list[int]:
    """Canonical code values: ordered by (length, symbol), counting up."""
    order = sorted(range(len(lengths)), key=lambda s: (lengths[s], s))
    codes = [0] * len(lengths)
    code, prev_len = 0, lengths[order[0]]
    for rank, s in enumerate(order):
        if rank:
            code = (code + 1) << (lengths[s] - prev_len)
        codes[s] = code
        prev_len = lengths[s]
    return codes


def _reverse_bits(value: int, width: int) -> int:
    return int(f"{value:0{width}b}"[::-1], 2) if width else 0


@dataclass(frozen=True)
class HuffmanCode:
    lengths: tuple[int, ...]  # per symbol

    @classmethod
    def from_counts(cls, counts) -> "HuffmanCode":
        return cls(tuple(limited_lengths(counts)))

    @property
    def codes(self) -> list[int]:
        return canonical_codes(self.lengths)

    def mean_bits(self, counts) -> float:
        counts = np.asarray(counts, dtype=np.float64)
        return float((counts * np.asarray(self.lengths)).sum() / max(counts.sum(), 1))

    def decode_table(self) -> np.ndarray:
        """uint8[256]: peeked LSB-first bits -> (length << 4) | symbol."""
        table = np.zeros(1 << TABLE_BITS, dtype=np.uint8)
        for sym, (length, code) in enumerate(zip(self.lengths, self.codes)):
            first_bits = _reverse_bits(code, length)
            for fill in range(1 << (TABLE_BITS - length)):
                table[first_bits | (fill << length)] = (length << 4) | sym
        return table

    def encode(self, symbols) -> tuple[bytes, int]:
        """Bit stream (LSB-first bytes, codes MSB-first) and its length in bits."""
        lengths = np.asarray(self.lengths)[symbols]
        codes = np.asarray(self.codes)[symbols]
        total = int(lengths.sum())
        bits = np.zeros(total + 8, dtype=np.uint8)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        for j in range(HUFF_MAX_LEN):  # bit j of each code, counted from its MSB
            has = lengths > j
            bits[starts[has] + j] = (codes[has] >> (lengths[has] - 1 - j)) & 1
        return np.packbits(bits[:total], bitorder="little").tobytes(), total

    def decode(self, data: bytes, count: int) -> np.ndarray:
        """Decode `count` symbols with the firmware's table algorithm."""
        table = self.decode_table()
        stream = np.unpackbits(np.frombuffer(data + b"\0", dtype=np.uint8), bitorder="little")
        weights = 1 << np.arange(TABLE_BITS)
        out = np.empty(count, dtype=np.int64)
        pos = 0
        for j in range(count):
            window = stream[pos:pos + TABLE_BITS]
            entry = int(table[int((window * weights[: len(window)]).sum())])
            out[j] = entry & 0xF
            pos += entry >> 4
        return out
