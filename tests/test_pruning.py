"""Pruning: structured pruning, permanent masks, repairs, and the bound after every fit."""

import warnings

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from network_helpers import (
    train_steps,
    worst_case_bits,
)

from concrete_qnn import SparseQuantNeuralNetwork
from concrete_qnn.accumulator import code_range, max_fan_in
from concrete_qnn.pruning import repair_layer


def test_structured_pruning_removes_the_fraction_and_keeps_the_function():
    torch.manual_seed(0)
    net = SparseQuantNeuralNetwork(4, 3, 2, n_prune_neurons_percentage=0.5)
    net.enable_pruning()
    x = train_steps(net, 4)
    net.eval()
    before = net(x)
    net.make_pruning_permanent()
    net.eval()
    assert (net.fc0.out_features, net.fc1.in_features) == (8, 8)
    assert (net.fc1.out_features, net.fc2.in_features) == (8, 8)
    assert net.fc0.in_features == 4 and net.fc2.out_features == 2
    torch.testing.assert_close(net(x), before)
    net.enable_pruning()  # a second enable prunes no further neurons
    net.make_pruning_permanent()
    assert net.fc0.out_features == 8


def test_structured_pruning_rounds_the_count_down_and_keeps_a_neuron():
    net = SparseQuantNeuralNetwork(
        3, 2, 2, n_hidden_neurons_multiplier=1, n_prune_neurons_percentage=0.9
    )
    net.make_pruning_permanent()
    assert net.fc0.out_features == 1 and net.fc1.in_features == 1
    assert net(torch.randn(5, 3)).shape == (5, 2)


def test_large_biases_are_clamped_and_reported():
    torch.manual_seed(0)
    net = SparseQuantNeuralNetwork(6, 2, 2)
    net.enable_pruning()
    train_steps(net, 6)
    with torch.no_grad():
        net.fc1.bias[:] = torch.tensor([1e3, -1e3])
    with pytest.warns(UserWarning, match="repaired accumulators"):
        certificate = net.make_pruning_permanent()
    assert net.pruning_repairs["biases_clamped"] >= 2
    assert certificate.holds
    assert max(worst_case_bits(net)) <= 8


def test_weights_over_the_bound_are_dropped_when_pruning_was_bypassed():
    torch.manual_seed(0)
    net = SparseQuantNeuralNetwork(30, 1, 3)
    net.make_pruning_permanent()
    with torch.no_grad():  # undo the fan-in cap behind the module's back
        net.fc0.weight[:] = torch.linspace(-1, 1, 90).reshape(3, 30)
    repairs = {"weights_dropped": 0, "biases_clamped": 0}
    repair_layer(net, 0, net.input_code_range, repairs)
    assert repairs["weights_dropped"] > 0
    assert max(worst_case_bits(net)) <= 8


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_w_bits=st.integers(2, 8),
    n_a_bits=st.integers(2, 8),
    n_accum_bits=st.integers(4, 16),
    signed=st.booleans(),
    narrow=st.booleans(),
    input_dim=st.integers(1, 12),
    n_layers=st.integers(1, 3),
    multiplier=st.sampled_from([0.5, 1, 2, 3]),
    n_outputs=st.integers(1, 4),
    bias_magnitude=st.sampled_from([0.0, 1.0, 100.0, 1e6]),
    prune_fraction=st.sampled_from([0.0, 0.25]),
    seed=st.integers(0, 2**16),
    rule=st.sampled_from(["fan_in", "l1_budget", "a2q"]),
    n_input_bits=st.sampled_from([None, "auto", 2, 4, 6]),
    learned_lookups=st.booleans(),
)
def test_every_accumulator_fits_after_permanent_pruning(
    n_w_bits,
    n_a_bits,
    n_accum_bits,
    signed,
    narrow,
    input_dim,
    n_layers,
    multiplier,
    n_outputs,
    bias_magnitude,
    prune_fraction,
    seed,
    rule,
    n_input_bits,
    learned_lookups,
):
    weights = code_range(n_w_bits, True, narrow)
    activations = code_range(n_a_bits, signed, narrow)
    inputs = activations
    if isinstance(n_input_bits, int):
        inputs = code_range(n_input_bits, signed, narrow)
    assume(inputs[1] >= 1)
    if rule == "fan_in":  # l1_budget's refusal is caught below
        for codes in (inputs, activations):
            assume(max_fan_in(weights, codes, n_accum_bits) >= 1)
    assume(n_layers == 1 or int(input_dim * multiplier) >= 1)
    torch.manual_seed(seed)
    try:
        net = SparseQuantNeuralNetwork(
            input_dim,
            n_layers,
            n_outputs,
            n_hidden_neurons_multiplier=multiplier,
            n_w_bits=n_w_bits,
            n_a_bits=n_a_bits,
            n_accum_bits=n_accum_bits,
            n_prune_neurons_percentage=prune_fraction,
            quant_narrow=narrow,
            quant_signed=signed,
            accumulator_rule=rule,
            n_input_bits=n_input_bits,
            learned_lookups=learned_lookups,
        )
    except ValueError as error:  # refused (l1_budget, a2q): a largest weight fits no input
        assume("no weight fits the L1 budget" not in str(error))
        raise
    with torch.no_grad():
        for fc in net.linear_layers():
            fc.weight.mul_(torch.rand_like(fc.weight) * 5)
            fc.bias.uniform_(-bias_magnitude, bias_magnitude)
    net.enable_pruning()
    train_steps(net, input_dim, seed=seed)
    if learned_lookups:  # functions of any shape: the next layers reach other codes
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in range(n_layers - 1):
                offsets = getattr(net, f"act{layer}").offsets
                offsets.copy_(torch.randn(offsets.shape, generator=generator))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        certificate = net.make_pruning_permanent()
    recomputed = worst_case_bits(net)
    assert max(recomputed) <= n_accum_bits
    assert certificate.max_bits == max(recomputed)
    if rule == "a2q":  # its codes fit as trained: the largest weight alone never needs a drop
        assert net.pruning_repairs["weights_dropped"] == 0
