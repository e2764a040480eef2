"""Accumulator rules and their masks: the weights each neuron keeps while training."""

import warnings

import numpy as np
import pytest
import torch
from brevitas import nn as qnn
from brevitas.quant import Int8WeightPerChannelFloat
from hypothesis import given, settings
from hypothesis import strategies as st
from network_helpers import (
    train_steps,
    worst_case_bits,
)

from concrete_qnn import SparseQuantNeuralNetwork
from concrete_qnn.accumulator import accumulator_bounds, signed_range
from concrete_qnn.convert import layer_codes
from concrete_qnn.nn.masks import L1BudgetMask


def test_pruning_keeps_the_largest_weights_and_rechooses_them():
    torch.manual_seed(0)
    net = SparseQuantNeuralNetwork(20, 2, 3)
    dense = net.fc0.weight.detach().clone()
    net.enable_pruning()
    net.enable_pruning()  # idempotent: a single mask
    assert len(net.fc0.parametrizations.weight) == 1
    kept = net.fc0.weight.detach()
    assert (kept != 0).sum(dim=1).max() == 7
    expected = dense.abs().topk(7, dim=1).indices.sort(dim=1).values
    assert torch.equal((kept != 0).nonzero()[:, 1].reshape(-1, 7), expected)
    with torch.no_grad():  # a pruned weight grows past the kept ones: it comes back
        original = net.fc0.parametrizations.weight.original
        pruned = int((kept[0] == 0).nonzero()[0])
        original[0, pruned] = 10.0
    assert net.fc0.weight[0, pruned] == 10.0
    assert (net.fc0.weight[0] != 0).sum() == 7


def test_pruned_weights_still_receive_gradients():
    torch.manual_seed(0)
    net = SparseQuantNeuralNetwork(20, 2, 3)
    net.enable_pruning()
    net(torch.randn(32, 20)).sum().backward()
    grad = net.fc0.parametrizations.weight.original.grad
    pruned = net.fc0.weight.detach() == 0
    assert grad[pruned].abs().sum() > 0


@settings(max_examples=60, deadline=None)
@given(
    n_out=st.integers(1, 4),
    # wide rows too: the mask reads only the weights that can matter (one past the most
    # non-zero codes that fit, 5 of 40 at 5 bits and inputs [0, 7])
    n_in=st.integers(1, 40),
    n_accum_bits=st.integers(5, 9),
    input_range=st.sampled_from([(-4, 3), (0, 3), (0, 7)]),
    bias=st.integers(-3, 3),
    seed=st.integers(0, 2**16),
)
def test_l1_budget_mask_keeps_the_largest_weights_whose_codes_fit(
    n_out, n_in, n_accum_bits, input_range, bias, seed
):
    weight = torch.randn(n_out, n_in, generator=torch.Generator().manual_seed(seed))
    low, high = input_range
    accum = signed_range(n_accum_bits)
    mask = L1BudgetMask(n_out, n_in, (-4, 3), np.full(n_in, low), np.full(n_in, high), accum)
    fc = qnn.QuantLinear(
        n_in,
        n_out,
        bias=False,
        weight_quant=Int8WeightPerChannelFloat,
        weight_bit_width=3,
        weight_narrow_range=False,
    )
    with torch.no_grad():
        fc.weight.copy_(weight)
        quant_weight = fc.quant_weight()  # the codes Brevitas gives, [-4, 3]
    codes = quant_weight.int().long().numpy()
    scale = quant_weight.scale.reshape(-1)
    mask.bias_units = torch.full((n_out,), float(bias)) * scale  # bias codes: bias
    keep = mask.keep(weight).numpy().astype(bool)
    bias_codes = np.full(n_out, bias, dtype=np.int64)
    for j in range(n_out):
        order = np.argsort(-np.abs(weight[j].numpy()), kind="stable")
        kept = np.flatnonzero(keep[j])
        assert order[0] in kept  # the largest weight sets the scale: always kept
        assert set(kept) == set(order[: len(kept)])  # the largest ones, a prefix
        lo, hi = accumulator_bounds(codes[j : j + 1] * keep[j], bias_codes[j : j + 1], input_range)
        lo0, hi0 = accumulator_bounds(
            codes[j : j + 1] * keep[j], np.zeros(1, np.int64), input_range
        )
        if len(kept) > 1:
            assert accum[0] <= min(lo[0], lo0[0]) and max(hi[0], hi0[0]) <= accum[1]
        if len(kept) < n_in:  # one more weight would not fit
            more = keep[j].copy()
            more[order[len(kept)]] = True
            row = codes[j : j + 1] * more
            lo, hi = accumulator_bounds(row, bias_codes[j : j + 1], input_range)
            lo0, hi0 = accumulator_bounds(row, np.zeros(1, dtype=np.int64), input_range)
            # ... with the bias or without it (the sum before the bias must fit too)
            assert min(lo[0], lo0[0]) < accum[0] or max(hi[0], hi0[0]) > accum[1]


def test_l1_budget_mask_refuses_input_ranges_without_zero():
    with pytest.raises(ValueError, match="hold 0"):
        L1BudgetMask(2, 3, (-4, 3), np.full(3, 1.0), np.full(3, 7.0), signed_range(8))


def test_l1_budget_builds_where_no_fan_in_fits_and_keeps_max_active_neurons():
    net = SparseQuantNeuralNetwork(8, 2, 2, n_accum_bits=5, accumulator_rule="l1_budget")
    assert net.max_active_neurons() == 0  # its meaning: the fan-in rule fits none
    train_steps(net, 8, steps=5)
    net.enable_pruning()
    train_steps(net, 8, steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        certificate = net.make_pruning_permanent()
    assert certificate.holds and certificate.max_bits <= 5
    assert max(worst_case_bits(net)) <= 5


def test_l1_budget_keeps_more_weights_per_neuron_than_the_fan_in_cap():
    torch.manual_seed(0)
    net = SparseQuantNeuralNetwork(30, 2, 3, n_accum_bits=8, accumulator_rule="l1_budget")
    net.enable_pruning()
    train_steps(net, 30, steps=20, lr=0.01)
    certificate = net.make_pruning_permanent()
    assert net.pruning_repairs["weights_dropped"] == 0  # the masks kept what fits
    assert certificate.holds
    # hidden inputs are ReLU outputs, codes [0, 3]: the certificate reads them so
    assert certificate.layers[1].input_range == (0, 3)
    assert max(layer.fan_in.max() for layer in certificate.layers) > net.max_active_neurons()
    assert max(worst_case_bits(net)) <= 8


def test_l1_budget_masks_read_the_biases_loaded_after_the_last_forward_pass():
    """skorch's load_best loads parameters after the last training step: the masks fold in
    with the loaded biases, so nothing needs repairing."""
    torch.manual_seed(0)
    net = SparseQuantNeuralNetwork(30, 2, 3, n_accum_bits=8, accumulator_rule="l1_budget")
    net.enable_pruning()
    train_steps(net, 30, steps=20, lr=0.01)
    state = {key: value.clone() for key, value in net.state_dict().items()}
    for i in range(net.n_layers):  # biases near the accumulator's top, as loaded by load_best
        scale = layer_codes(net, i)[2]
        state[f"fc{i}.bias"] = torch.as_tensor(100.0 * scale, dtype=torch.float32)
    net.load_state_dict(state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a repair warns
        certificate = net.make_pruning_permanent()
    assert net.pruning_repairs == {"weights_dropped": 0, "biases_clamped": 0}
    assert certificate.holds
    np.testing.assert_array_equal(layer_codes(net, 0)[1], 100)
