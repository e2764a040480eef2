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
    table_output_range,
)
from concrete_qnn.certificate import certify_network


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


@st.composite
def integer_networks(draw):
    """A random 3-layer integer network: weight codes in [-4, 3], biases, and for each
    hidden layer a shift and a table whose rows cover more than the certified interval
    (the unreachable padding holds codes that must never count as reached)."""
    widths = [draw(st.integers(1, 3)) for _ in range(3)] + [draw(st.integers(1, 2))]
    weights = [
        draw(hnp.arrays(np.int64, (n_out, n_in), elements=st.integers(-4, 3)))
        for n_in, n_out in itertools.pairwise(widths)
    ]
    biases = [
        draw(hnp.arrays(np.int64, (n_out,), elements=st.integers(-20, 20))) for n_out in widths[1:]
    ]
    shifts = [draw(st.integers(0, 3)) for _ in range(2)]
    seed = draw(st.integers(0, 2**32 - 1))
    return weights, biases, shifts, np.random.default_rng(seed)


@settings(max_examples=80, deadline=None)
@given(network=integer_networks(), input_range=st.sampled_from([(-2, 1), (0, 3), (-4, 3)]))
def test_certify_network_is_sound_and_tight_over_reachable_codes(network, input_range):
    weights, biases, shifts, rng = network
    low_code, high_code = input_range
    lookups = []

    def tabulate(layer, certified):
        shift = shifts[layer]
        first, last = certified.lo >> shift, certified.hi >> shift
        pad = 2
        width = int((last - first).max()) + 1 + 2 * pad
        table = rng.integers(low_code, high_code + 1, size=(len(first), width))
        table[:, :pad] = 99  # before every row's first reachable entry: never read
        offsets = first - pad
        for row, span in enumerate(last - first):
            table[row, pad + span + 1 :] = -99  # after its last reachable entry
        lookups.append((table, offsets, shift))
        return lookups[-1]

    certificate = certify_network(
        3, lambda layer, _: (weights[layer], biases[layer]), input_range, 12, tabulate
    )
    # Every input vector inside each layer's reachable codes stays in its interval, and the
    # interval's two ends are reached.
    for layer, certified in enumerate(certificate.layers):
        box = itertools.product(
            *(
                range(lo, hi + 1)
                for lo, hi in zip(certified.input_low, certified.input_high, strict=True)
            )
        )
        partial = np.array([weights[layer] @ np.array(x) for x in box])
        sums = partial + biases[layer]
        np.testing.assert_array_equal(certified.lo, sums.min(axis=0))
        np.testing.assert_array_equal(certified.hi, sums.max(axis=0))
        # The bits cover the sum and the weighted sum before the bias, both reached.
        np.testing.assert_array_equal(
            certified.bits,
            np.maximum(
                bits_needed(sums.min(axis=0), sums.max(axis=0)),
                bits_needed(partial.min(axis=0), partial.max(axis=0)),
            ),
        )
    # The reachable codes of a hidden neuron are exactly its table's entries read by the
    # accumulators of its interval.
    for layer, (table, offsets, shift) in enumerate(lookups):
        certified, following = certificate.layers[layer], certificate.layers[layer + 1]
        for j in range(len(offsets)):
            read = table[j, (np.arange(certified.lo[j], certified.hi[j] + 1) >> shift) - offsets[j]]
            assert (following.input_low[j], following.input_high[j]) == (read.min(), read.max())
    # The network itself, on every input code vector, stays inside the certificate.
    codes = np.array(
        list(itertools.product(range(low_code, high_code + 1), repeat=weights[0].shape[1]))
    )
    for layer, certified in enumerate(certificate.layers):
        accumulators = codes @ weights[layer].T + biases[layer]
        assert np.all(accumulators >= certified.lo) and np.all(accumulators <= certified.hi)
        if layer < 2:
            table, offsets, shift = lookups[layer]
            index = (accumulators >> shift) - offsets
            codes = np.take_along_axis(table, index.T, axis=1).T
    assert certificate.max_bits == max(int(c.bits.max()) for c in certificate.layers)


def test_table_output_range_refuses_a_table_that_misses_the_interval():
    table = np.array([[0, 1, 2]])
    with pytest.raises(ValueError, match="does not cover"):
        table_output_range(table, np.array([0]), np.array([0]), np.array([5]), 0)
    low, high = table_output_range(table, np.array([0]), np.array([1]), np.array([2]), 0)
    assert (low.tolist(), high.tolist()) == ([1], [2])
