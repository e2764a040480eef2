"""Code ranges, fan-in caps, intervals and bit-widths against brute force and Brevitas."""

import itertools

import numpy as np
import pytest
import torch
from brevitas import nn as qnn
from brevitas.quant import Int8ActPerTensorFloat, Uint8ActPerTensorFloat
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from concrete_qnn.accumulator import (
    accumulator_bounds,
    bits_needed,
    code_range,
    max_fan_in,
    product_range,
    signed_range,
)


@pytest.mark.parametrize("n_bits", range(1, 9))
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("narrow", [True, False])
def test_code_range_matches_brevitas(n_bits, signed, narrow):
    quant = qnn.QuantIdentity(
        act_quant=Int8ActPerTensorFloat if signed else Uint8ActPerTensorFloat,
        bit_width=n_bits,
        narrow_range=narrow,
    )
    int_quant = quant.act_quant.fused_activation_quant_proxy.tensor_quant.int_quant
    width = torch.tensor(float(n_bits))
    assert code_range(n_bits, signed, narrow) == (
        int(int_quant.min_int(width)),
        int(int_quant.max_int(width)),
    )


def test_code_range_table_of_design():
    assert code_range(3, signed=True, narrow=False) == (-4, 3)
    assert code_range(3, signed=True, narrow=True) == (-3, 3)
    assert code_range(3, signed=False, narrow=False) == (0, 7)
    assert code_range(3, signed=False, narrow=True) == (0, 6)
    with pytest.raises(ValueError, match="at least 1 bit"):
        code_range(0, True, False)


def _fits(k, weight_range, input_range, n_accum_bits):
    """Brute force: do all sums of k corner products fit the accumulator?"""
    low, high = signed_range(n_accum_bits)
    products = [
        w * x
        for w in range(weight_range[0], weight_range[1] + 1)
        for x in range(input_range[0], input_range[1] + 1)
    ]
    return k * min(products) >= low and k * max(products) <= high


@pytest.mark.parametrize("w_bits", [2, 3, 4])
@pytest.mark.parametrize("a_bits", [1, 2, 3, 4])
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("narrow", [True, False])
@pytest.mark.parametrize("accum", [5, 8, 10])
def test_max_fan_in_is_the_largest_fitting_k(w_bits, a_bits, signed, narrow, accum):
    weights = code_range(w_bits, True, narrow)
    inputs = code_range(a_bits, signed, narrow)
    if inputs == (0, 0):
        with pytest.raises(ValueError, match="no usable code"):
            max_fan_in(weights, inputs, accum)
        return
    k = max_fan_in(weights, inputs, accum)
    assert k == 0 or _fits(k, weights, inputs, accum)
    assert not _fits(k + 1, weights, inputs, accum)


def test_max_fan_in_known_values():
    # Signed 3/3/8: products in [-12, 16], 7 * 16 = 112 <= 127 < 8 * 16.
    assert max_fan_in((-4, 3), (-4, 3), 8) == 7
    assert product_range((-4, 3), (-4, 3)) == (-12, 16)
    # Unsigned activations: products in [-28, 21]; 5 * -28 = -140 < -128, so 4.
    assert max_fan_in((-4, 3), (0, 7), 8) == 4


@given(st.integers(-(2**40), 2**40), st.integers(0, 2**40))
def test_bits_needed_is_the_smallest_signed_width(low, span):
    high = low + span
    n = int(bits_needed(np.array([low]), np.array([high]))[0])
    assert -(2 ** (n - 1)) <= low and high <= 2 ** (n - 1) - 1
    assert n == 1 or not (-(2 ** (n - 2)) <= low and high <= 2 ** (n - 2) - 1)


@settings(max_examples=60, deadline=None)
@given(
    weights=hnp.arrays(
        np.int64, st.tuples(st.integers(1, 3), st.integers(1, 4)), elements=st.integers(-4, 3)
    ),
    bias_seed=st.integers(-50, 50),
    input_range=st.sampled_from([(-2, 1), (-1, 1), (0, 3), (0, 1), (-4, 3)]),
)
def test_accumulator_bounds_equal_brute_force(weights, bias_seed, input_range):
    bias = np.arange(weights.shape[0], dtype=np.int64) * 7 + bias_seed
    low, high = accumulator_bounds(weights, bias, input_range)
    codes = range(input_range[0], input_range[1] + 1)
    sums = np.array(
        [weights @ np.array(x) + bias for x in itertools.product(codes, repeat=weights.shape[1])]
    )
    np.testing.assert_array_equal(low, sums.min(axis=0))
    np.testing.assert_array_equal(high, sums.max(axis=0))
