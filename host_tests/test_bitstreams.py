"""Property tests for the bit-level formats of docs/spec.md (sections 2.1, 2.2, 3)."""
import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings, strategies as st

from dqa_mcu import bitpack
from dqa_mcu.huffman import HUFF_MAX_LEN, HuffmanCode, canonical_codes, limited_lengths
from dqa_mcu.reference.dqa import rshift_round


@given(bits=st.integers(1, 16), signed=st.booleans(), data=st.data())
def test_pack_unpack_round_trip(bits, signed, data):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    codes = np.array(data.draw(st.lists(st.integers(lo, hi), max_size=200)), dtype=np.int64)
    packed = bitpack.pack(codes, bits)
    assert len(packed) == bitpack.plane_bytes(len(codes), bits)
    assert np.array_equal(bitpack.unpack(packed, len(codes), bits, signed), codes)


def test_pack_is_lsb_first():
    # 3-bit codes 1, 2, 7 -> stream bits 100 010 111 -> byte0 = 0b11_010_001, byte1 = 0b1
    assert bitpack.pack(np.array([1, 2, 7]), 3) == bytes([0b11010001, 0b1])
    assert bitpack.pack(np.array([-1, 0x1234]), 16) == bytes([0xFF, 0xFF, 0x34, 0x12])


def _kraft(lengths):
    return sum(2.0 ** -length for length in lengths)


@given(st.lists(st.integers(0, 10**6), min_size=2, max_size=16))
def test_limited_lengths_are_a_complete_prefix_code(counts):
    lengths = limited_lengths(counts)
    assert max(lengths) <= HUFF_MAX_LEN
    assert _kraft(lengths) == 1.0  # complete: no wasted code space
    # optimal among length-limited codes is hard to check; at least never worse than fixed length
    fixed = int(np.ceil(np.log2(len(counts))))
    assert HuffmanCode(tuple(lengths)).mean_bits(counts) <= fixed + 1e-9


def test_length_limit_binds_on_skewed_counts():
    counts = [2 ** (20 - i) for i in range(16)]  # unlimited Huffman would need 15 bits
    assert max(limited_lengths(counts)) == HUFF_MAX_LEN


def test_canonical_codes_follow_the_spec_rule():
    # lengths (2, 1, 3, 3): order by (length, symbol) = 1, 0, 2, 3 -> codes 0, 10, 110, 111
    assert canonical_codes([2, 1, 3, 3]) == [0b10, 0b0, 0b110, 0b111]


@settings(max_examples=60)
@given(m=st.integers(1, 4), data=st.data())
def test_huffman_round_trip_through_the_firmware_table(m, data):
    counts = data.draw(st.lists(st.integers(0, 1000), min_size=1 << m, max_size=1 << m))
    code = HuffmanCode.from_counts(counts)
    symbols = np.array(data.draw(st.lists(st.integers(0, (1 << m) - 1), max_size=300)), dtype=np.int64)
    stream, nbits = code.encode(symbols)
    assert nbits == sum(code.lengths[s] for s in symbols)
    assert np.array_equal(code.decode(stream, len(symbols)), symbols)


@given(acc=st.integers(-2**31, 2**31 - 1), mult=st.integers(0, 2**31 - 1), shift=st.integers(0, 62))
def test_rshift_round_is_round_half_up_of_the_exact_product(acc, mult, shift):
    exact = Fraction(acc * mult, 2 ** shift)  # |acc * mult| < 2^62: fits int64
    got = int(rshift_round(np.array([acc], dtype=np.int64) * mult, shift)[0])
    assert got == math.floor(exact + Fraction(1, 2))
