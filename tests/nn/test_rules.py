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


@settings(max_examples=60, deadline=None)
@given(
    n_out=st.integers(1, 4),
    n_in=st.integers(1, 40),
    n_accum_bits=st.integers(5, 10),
    input_range=st.sampled_from([(-4, 3), (0, 3), (0, 7), (-16, 15)]),
    weight_range=st.sampled_from([(-4, 3), (-3, 3), (-128, 127)]),
    bias=st.sampled_from([0.0, 0.3, -2.0, 7.5]),
    seed=st.integers(0, 2**16),
)
def test_a2q_mask_codes_fit_the_exact_interval_and_round_to_nearest_where_they_can(
    n_out, n_in, n_accum_bits, input_range, weight_range, bias, seed
):
    from concrete_qnn.nn.masks import L1BallMask
    from concrete_qnn.nn.quantizers import budget_scaled_linear

    low, high = input_range
    n_w_bits = {3: 3, 127: 8}[weight_range[1]]
    fc = budget_scaled_linear(n_in, n_out, n_w_bits, narrow=weight_range[0] == -3)
    accum = signed_range(n_accum_bits)
    centre = low >= 0 and n_in > 1  # as A2QRule sets it: one input centred is 0
    mask = L1BallMask(
        n_out, n_in, weight_range, np.full(n_in, low), np.full(n_in, high), accum, fc, centre
    )
    weight = torch.randn(n_out, n_in, generator=torch.Generator().manual_seed(seed))
    mask.bias_units = torch.full((n_out,), bias)
    out = mask(weight)
    with torch.no_grad():
        fc.weight.copy_(out)
        quant_weight = fc.quant_weight()  # Brevitas finds the mask's codes and scale
    codes = quant_weight.int().long().numpy()
    scale = quant_weight.scale.reshape(-1).double().numpy()
    centred = weight - weight.mean(1, keepdim=True) if centre else weight
    expected, expected_scale = mask.codes(centred)
    np.testing.assert_array_equal(codes, expected.long().numpy())
    np.testing.assert_allclose(scale, expected_scale[:, 0].double().numpy(), rtol=1e-5)
    assert (np.abs(codes).max(1) >= 1).all()  # the largest weight keeps a code
    bias_codes = np.round(bias / scale).astype(np.int64)
    for j in range(n_out):
        row = codes[j : j + 1]
        lo, hi = accumulator_bounds(row, bias_codes[j : j + 1], input_range)
        lo0, hi0 = accumulator_bounds(row, np.zeros(1, np.int64), input_range)
        if np.abs(row).sum() > 1:  # more than the one code kept whatever the budget
            assert accum[0] <= min(lo[0], lo0[0]) and max(hi[0], hi0[0]) <= accum[1]
        # never further from zero than round-to-nearest, never nearer than toward zero
        ratio = (centred[j] / expected_scale[j]).double().numpy()
        assert (np.abs(row[0]) <= np.maximum(np.round(np.abs(ratio)), 1)).all()
        extreme = np.where(ratio > 0, weight_range[1], -weight_range[0])
        assert (np.abs(row[0]) >= np.minimum(np.trunc(np.abs(ratio)), extreme)).all()


def test_a2q_mask_centres_weights_on_non_negative_inputs_and_trains_every_weight():
    torch.manual_seed(0)
    net = SparseQuantNeuralNetwork(30, 2, 3, n_accum_bits=8, accumulator_rule="a2q")
    net.enable_pruning()
    masks = [fc.parametrizations.weight[0] for fc in net.linear_layers()]
    assert [mask.zero_center for mask in masks] == [False, True]  # layer 1 reads ReLU codes
    x = torch.randn(32, 30)
    net(x).sum().backward()
    grad = net.fc0.parametrizations.weight.original.grad
    assert (grad != 0).float().mean() > 0.9  # straight through: zero codes still learn
    certificate = net.make_pruning_permanent()
    assert certificate.holds and net.pruning_repairs["weights_dropped"] == 0
    # more inputs per neuron than the fan-in cap, every accumulator within 8 bits
    assert max(layer.fan_in.max() for layer in certificate.layers) > net.max_active_neurons()
    assert max(worst_case_bits(net)) <= 8
