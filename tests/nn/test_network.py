"""SparseQuantNeuralNetwork: layers, quantizers and the forward pass."""

import pytest
import torch
from brevitas import nn as qnn
from network_helpers import (
    assert_certificate_matches_enumeration,
    train_steps,
    worst_case_bits,
)

from concrete_qnn import SparseQuantNeuralNetwork


def test_layer_names_types_and_shapes():
    net = SparseQuantNeuralNetwork(
        input_dim=5, n_layers=3, n_outputs=2, n_hidden_neurons_multiplier=2.5
    )
    names = [name for name, _ in net.named_children()]
    assert names == ["quant0", "fc0", "act0", "quant1", "fc1", "act1", "quant2", "fc2"]
    shapes = [(12, 5), (12, 12), (2, 12)]
    for i, shape in enumerate(shapes):
        assert isinstance(getattr(net, f"quant{i}"), qnn.QuantIdentity)
        fc = getattr(net, f"fc{i}")
        assert isinstance(fc, qnn.QuantLinear)
        assert tuple(fc.weight.shape) == shape and fc.bias.shape == (shape[0],)
    assert isinstance(net.act0, torch.nn.ReLU) and isinstance(net.act1, torch.nn.ReLU)
    assert net(torch.randn(7, 5)).shape == (7, 2)
    sigmoid = SparseQuantNeuralNetwork(5, 2, 1, activation_function=torch.nn.Sigmoid)
    assert isinstance(sigmoid.act0, torch.nn.Sigmoid)


def test_quantizers_follow_the_configuration():
    net = SparseQuantNeuralNetwork(
        4, 2, 3, n_w_bits=4, n_a_bits=2, quant_narrow=True, quant_signed=False
    )
    assert net.quant0.act_quant.is_signed is False
    assert net.quant1.act_quant.is_narrow_range is True
    assert int(net.quant1.act_quant.bit_width()) == 2
    assert int(net.fc0.weight_quant.bit_width()) == 4
    assert net.fc0.weight_quant.is_narrow_range is True
    codes = net.fc0.quant_weight().int()
    assert int(codes.min()) >= -7 and int(codes.max()) <= 7


def test_wrong_feature_count_names_both_counts():
    net = SparseQuantNeuralNetwork(4, 2, 2)
    with pytest.raises(ValueError, match=r"4 features, got shape \(3, 5\) with 5 features"):
        net(torch.zeros(3, 5))


def test_unsigned_one_bit_activations_are_computed_exactly():
    net = SparseQuantNeuralNetwork(3, 1, 2, n_a_bits=1, quant_signed=False)
    assert net.input_code_range == (0, 1)
    train_steps(net, 3)
    certificate = net.make_pruning_permanent()
    assert_certificate_matches_enumeration(net, certificate)


@pytest.mark.parametrize("rule", ["fan_in", "l1_budget", "a2q"])
def test_finer_input_codes_reach_only_the_first_quantizer_and_stay_certified(rule):
    # 5-bit inputs, 3-bit activations, 10-bit accumulators (one 5-bit input times a 3-bit
    # weight code reaches 64, which the fan-in cap of an 8-bit accumulator would not hold).
    net = SparseQuantNeuralNetwork(
        2, 3, 2, n_input_bits=5, n_accum_bits=10, accumulator_rule=rule, n_hidden_neurons_min=3
    )
    assert [int(getattr(net, f"quant{i}").act_quant.bit_width()) for i in range(3)] == [5, 3, 3]
    assert net.input_code_range == (-16, 15) and net.activation_code_range == (-4, 3)
    train_steps(net, 2, steps=5)
    certificate = net.make_pruning_permanent()
    assert certificate.layers[0].input_range == (-16, 15)
    assert all(layer.input_range[0] >= 0 for layer in certificate.layers[1:])  # after ReLU
    assert_certificate_matches_enumeration(net, certificate)  # every 5-bit input vector
    assert max(worst_case_bits(net)) <= 10


@pytest.mark.parametrize("rule", ["fan_in", "l1_budget"])
def test_a_training_pass_selects_each_layers_weights_once(rule, monkeypatch):
    # The rounded lookups read each hidden layer's weight scale again; the selection (a ranking
    # of every row under the L1 budget) must not run a second time for it.
    net = SparseQuantNeuralNetwork(8, 2, 3, n_accum_bits=8, accumulator_rule=rule)
    net.enable_pruning()
    mask_type = type(net.fc0.parametrizations.weight[0])
    calls = []
    original = mask_type.keep
    monkeypatch.setattr(mask_type, "keep", lambda self, w: calls.append(1) or original(self, w))
    with net.rounded_lookups(5):
        net.train()
        net(torch.randn(16, 8)).sum().backward()
    assert len(calls) == net.n_layers
