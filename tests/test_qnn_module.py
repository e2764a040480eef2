"""SparseQuantNeuralNetwork: shape, validation, pruning and the accumulator guarantee."""

import inspect
import itertools
import warnings

import numpy as np
import pytest
import torch
from brevitas import nn as qnn
from brevitas.quant import Int8WeightPerChannelFloat
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from concrete_qnn import MAX_BITWIDTH_BACKWARD_COMPATIBLE, SparseQuantNeuralNetwork
from concrete_qnn.accumulator import accumulator_bounds, code_range, max_fan_in, signed_range
from concrete_qnn.integer_model import OutputHead
from concrete_qnn.qnn_module import L1BudgetMask


def brevitas_layer_codes(net, layer):
    """Weight codes, bias codes and input codes of one layer, read off Brevitas itself.

    The bias codes come from the forward pass on an all-zero input (code 0), so they are
    what the network really adds, not what our own extraction believes.
    """
    net.eval()
    fc, quant = getattr(net, f"fc{layer}"), getattr(net, f"quant{layer}")
    with torch.no_grad():
        quant_weight = fc.quant_weight()
        input_scale = quant.act_quant.scale()
        unit = (quant_weight.scale.reshape(-1) * input_scale).double()
        at_zero = fc(quant(torch.zeros(1, fc.in_features)))[0].double()
    int_quant = quant.act_quant.fused_activation_quant_proxy.tensor_quant.int_quant
    width = quant.act_quant.bit_width()
    inputs = (int(int_quant.min_int(width)), int(int_quant.max_int(width)))
    bias = torch.round(at_zero / unit).long().tolist()
    return quant_weight.int().long().tolist(), bias, inputs, unit


def reached_codes(net, layer, unit, low, high):
    """(min, max) of the codes Brevitas' quantizer after ``layer`` gives ``act(unit * A)``
    over every accumulator ``A`` in ``[low, high]``: what the next layer's input reaches."""
    with torch.no_grad():
        values = torch.arange(int(low), int(high) + 1).double()
        real = getattr(net, f"act{layer}")((values * unit).float())
        codes = getattr(net, f"quant{layer + 1}")(real[:, None]).int()
    return int(codes.min()), int(codes.max())


def worst_case_bits(net):
    """Every neuron's worst-case signed bit-width over reachable input codes, in Python
    integers, of its accumulator and of its weighted sum before the bias (the FHE circuit
    holds both): layer 0's inputs reach Brevitas' input codes, a later layer's input ``j``
    the codes ``reached_codes`` gives over neuron ``j``'s interval."""
    bits, reach = [], None
    for layer in range(net.n_layers):
        weights, bias, (xmin, xmax), unit = brevitas_layer_codes(net, layer)
        reach = reach or [(xmin, xmax)] * len(weights[0])
        next_reach = []
        for j, (row, b) in enumerate(zip(weights, bias, strict=True)):
            pairs = list(zip(row, reach, strict=True))
            low = b + sum(min(w * lo, w * hi) for w, (lo, hi) in pairs)
            high = b + sum(max(w * lo, w * hi) for w, (lo, hi) in pairs)
            n = 1
            while not (-(2 ** (n - 1)) <= min(low, low - b) and max(high, high - b) < 2 ** (n - 1)):
                n += 1
            bits.append(n)
            if layer < net.n_layers - 1:
                next_reach.append(reached_codes(net, layer, unit[j], low, high))
        reach = next_reach
    return bits


def train_steps(net, n_features, steps=3, lr=0.05, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, n_features, generator=generator) * 2
    target = torch.randn(64, net.n_outputs, generator=generator)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        loss = (net(x) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return x


# ---------------------------------------------------------------------- shape
def test_signature_and_defaults():
    parameters = inspect.signature(SparseQuantNeuralNetwork.__init__).parameters
    assert list(parameters)[1:] == [
        "input_dim",
        "n_layers",
        "n_outputs",
        "n_hidden_neurons_multiplier",
        "n_w_bits",
        "n_a_bits",
        "n_accum_bits",
        "n_prune_neurons_percentage",
        "activation_function",
        "quant_narrow",
        "quant_signed",
        "accumulator_rule",
        "n_hidden_neurons_min",
        "n_input_bits",
        "weight_scaling",
    ]
    defaults = {name: p.default for name, p in parameters.items()}
    assert defaults["weight_scaling"] == "max"  # Brevitas' max-abs scale
    assert defaults["n_input_bits"] is None  # inputs have n_a_bits, as in the seed
    assert defaults["accumulator_rule"] == "fan_in"
    assert defaults["n_hidden_neurons_min"] == 0  # the seed's width rule
    assert defaults["n_hidden_neurons_multiplier"] == 4
    assert defaults["n_w_bits"] == 3 and defaults["n_a_bits"] == 3
    assert defaults["n_accum_bits"] == 8 == MAX_BITWIDTH_BACKWARD_COMPATIBLE
    assert defaults["n_prune_neurons_percentage"] == 0.0
    assert defaults["activation_function"] is torch.nn.ReLU
    assert defaults["quant_narrow"] is False and defaults["quant_signed"] is True
    for name in ("input_dim", "n_layers", "n_outputs"):
        assert parameters[name].default is inspect.Parameter.empty


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


@pytest.mark.parametrize(
    ("input_dim", "multiplier", "minimum", "width"),
    [(2, 4, 0, 8), (2, 4, 64, 64), (30, 4, 64, 120), (5, 0.1, 3, 3), (16, 4, 64, 64)],
)
def test_hidden_width_is_at_least_n_hidden_neurons_min(input_dim, multiplier, minimum, width):
    net = SparseQuantNeuralNetwork(
        input_dim, 3, 2, n_hidden_neurons_multiplier=multiplier, n_hidden_neurons_min=minimum
    )
    assert net.hidden_width == width
    assert net.layer_widths() == [input_dim, width, width, 2]


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


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_layers": 0}, r"n_layers must be an integer >= 1, got 0"),
        ({"input_dim": 0}, r"input_dim must be an integer >= 1, got 0"),
        ({"n_outputs": 0}, r"n_outputs must be an integer >= 1, got 0"),
        ({"n_layers": 2.5}, r"n_layers must be an integer >= 1, got 2.5"),
        ({"n_w_bits": 0}, r"n_w_bits must be an integer >= 1, got 0"),
        ({"n_a_bits": 0}, r"n_a_bits must be an integer >= 1, got 0"),
        ({"n_accum_bits": 0}, r"n_accum_bits must be an integer >= 1, got 0"),
        (
            {"n_hidden_neurons_multiplier": 0.1},
            r"n_hidden_neurons_multiplier must make the hidden width .* >= 1",
        ),
        ({"n_hidden_neurons_min": -1}, r"n_hidden_neurons_min must be an integer >= 0, got -1"),
        ({"n_hidden_neurons_min": 2.5}, r"n_hidden_neurons_min must be an integer >= 0"),
        ({"n_prune_neurons_percentage": 1.0}, r"n_prune_neurons_percentage must be in \[0, 1\)"),
        ({"n_prune_neurons_percentage": -0.1}, r"n_prune_neurons_percentage must be in \[0, 1\)"),
        ({"activation_function": torch.nn.ReLU()}, r"activation_function must be a torch.nn"),
        ({"activation_function": int}, r"activation_function must be a torch.nn"),
        ({"n_w_bits": 1}, r"n_w_bits=1 .* no positive code"),
        ({"n_a_bits": 1}, r"n_a_bits=1 .* no positive code"),
        (
            {"n_a_bits": 1, "quant_signed": False, "quant_narrow": True},
            r"n_a_bits=1 .* activation codes \[0, 0\]",
        ),
        ({"n_accum_bits": 4}, r"n_accum_bits=4 is too small for n_w_bits=3 and n_a_bits=3"),
        ({"accumulator_rule": "a2q"}, r"accumulator_rule must be one of 'fan_in', 'l1_budget'"),
        (
            {"weight_scaling": "mse"},
            r"weight_scaling must be one of 'max', 'budget_mse', 'auto', got 'mse'",
        ),
        ({"weight_scaling": "budget_mse"}, r'budget_mse.* needs accumulator_rule="l1_budget"'),
        ({"n_input_bits": 0}, r"n_input_bits must be None, 'auto' or an integer >= 1, got 0"),
        ({"n_input_bits": "fine"}, r"n_input_bits must be None, 'auto' .* got 'fine'"),
        ({"n_input_bits": True}, r"n_input_bits must be None, 'auto' .* got True"),
        ({"n_input_bits": 4.5}, r"n_input_bits must be None, 'auto' .* got 4.5"),
        ({"n_input_bits": 1}, r"n_input_bits=1 .* input codes \[-1, 0\], which have no positive"),
        (
            {"n_input_bits": 6},
            r"too small for n_w_bits=3 and n_a_bits=3 and n_input_bits=6: not even one",
        ),
        (
            {"accumulator_rule": "l1_budget", "n_input_bits": 9},
            r"n_accum_bits=8 is too small for n_w_bits=3 and n_a_bits=3 and n_input_bits=9: a "
            r"neuron's largest weight code \(3\) times the first layer's largest input code "
            r"\(256\) is 768, over 127",
        ),
        (
            {"accumulator_rule": "l1_budget", "n_accum_bits": 3},
            r"n_accum_bits=3 is too small for n_w_bits=3 and n_a_bits=3: .* largest input code "
            r"\(4\) is 12, over 3, so no weight fits the L1 budget",
        ),
        # The integer model computes each neuron's activation alone: a helper trained
        # LogSoftmax on wine (torch 0.888) and got an integer model of 0.399, silently.
        (
            {"activation_function": torch.nn.LogSoftmax},
            r"must act on each value alone \(element-wise\).*LogSoftmax mixes",
        ),
        ({"activation_function": torch.nn.Softmax}, r"Softmax mixes the values of a layer"),
        # Read as true or false, or refused with an internal message (a helper's findings).
        ({"quant_narrow": -1}, r"quant_narrow must be True or False, got -1"),
        ({"quant_signed": "abc"}, r"quant_signed must be True or False, got 'abc'"),
        ({"n_hidden_neurons_multiplier": -1}, r"multiplier must be a number >= 0, got -1"),
        ({"n_hidden_neurons_multiplier": True}, r"multiplier must be a number >= 0, got True"),
        (
            {"n_prune_neurons_percentage": "abc"},
            r"percentage must be a number in \[0, 1\), got 'abc'",
        ),
        (
            {"n_prune_neurons_percentage": None},
            r"percentage must be a number in \[0, 1\), got None",
        ),
    ],
)
def test_invalid_parameters_raise(kwargs, message):
    arguments = {"input_dim": 3, "n_layers": 2, "n_outputs": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        SparseQuantNeuralNetwork(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # 8-bit weights: every first-layer weight was dropped, the model predicted a constant
        ({"n_w_bits": 8}, r"largest weight code \(127\) times the first layer's largest input "),
        ({"n_w_bits": 7}, r"largest weight code \(63\) times a hidden layer's largest input "),
        ({"n_accum_bits": 4}, r"largest weight code \(3\) times a hidden layer's largest input "),
    ],
)
def test_the_l1_budget_refuses_bounds_that_fit_no_largest_weight(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SparseQuantNeuralNetwork(
            30, 3, 2, accumulator_rule="l1_budget", n_input_bits="auto", **kwargs
        )


@pytest.mark.parametrize(
    ("rule", "accum", "used", "input_bits"),
    [
        ("l1_budget", 5, "budget_mse", 3),
        ("l1_budget", 6, "budget_mse", 4),
        ("l1_budget", 7, "budget_mse", 5),
        ("l1_budget", 8, "max", 3),  # 30 features: the max-abs rule's 3 bits
        ("fan_in", 6, "max", 3),
    ],
)
def test_auto_weight_scaling_follows_the_budget_below_8_bits(rule, accum, used, input_bits):
    net = SparseQuantNeuralNetwork(
        30,
        3,
        2,
        accumulator_rule=rule,
        n_accum_bits=accum,
        weight_scaling="auto",
        n_input_bits="auto",
    )
    assert (net.weight_scaling_used, net.input_bit_width) == (used, input_bits)
    assert hasattr(net.fc0, "weight_largest_code") == (used == "budget_mse")
    assert net.get_config()["weight_scaling"] == "auto"  # what was asked, for clone/pickle
    net.enable_pruning()
    mask = net.fc0.parametrizations.weight[0]
    assert (getattr(mask, "_layer", None) is not None) == (used == "budget_mse")


def test_budget_mse_refuses_only_bounds_that_fit_no_weight_of_code_1():
    def network(**kwargs):
        return SparseQuantNeuralNetwork(30, 3, 2, accumulator_rule="l1_budget", **kwargs)

    # 4 x 8 > 15 at the max-abs scale, but the code 1 fits: 1 x 8 <= 15
    with pytest.raises(ValueError, match=r"largest weight code \(3\) times the first layer's"):
        network(n_accum_bits=5, n_input_bits=4)
    assert network(n_accum_bits=5, n_input_bits=4, weight_scaling="budget_mse").n_accum_bits == 5
    assert network(n_w_bits=8, weight_scaling="budget_mse").weight_code_range == (-128, 127)
    with pytest.raises(
        ValueError,
        match=r"n_input_bits=5: a neuron's largest weight at its smallest code \(1\) times the "
        r"first layer's largest input code \(16\) is 16, over 15, so no weight fits",
    ):
        network(n_accum_bits=5, n_input_bits=5, weight_scaling="budget_mse")


@pytest.mark.parametrize(
    ("kwargs", "warns"),
    [
        ({"n_w_bits": 6}, True),
        ({"n_accum_bits": 5}, True),
        ({}, False),
        ({"n_accum_bits": 6}, False),
        ({"n_w_bits": 2, "n_a_bits": 2, "n_accum_bits": 5}, False),
        # "auto" gives 4 narrow features 6-bit inputs: 3 x 31 of 127 in the first layer, on
        # purpose (a helper measured iris 3-fold 0.90); only hidden layers warn.
        ({"input_dim": 4, "quant_narrow": True}, False),
    ],
)
def test_the_l1_budget_warns_where_one_largest_weight_fills_it(kwargs, warns):
    kwargs = {"input_dim": 30, **kwargs}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = SparseQuantNeuralNetwork(
            n_layers=3, n_outputs=2, accumulator_rule="l1_budget", n_input_bits="auto", **kwargs
        )
    assert kwargs["input_dim"] != 4 or net.input_code_range == (-31, 31)
    messages = [str(w.message) for w in caught if "holds one weight" in str(w.message)]
    assert len(messages) == int(warns)


def test_enable_pruning_refuses_a_bound_that_fits_no_weight():
    net = SparseQuantNeuralNetwork(3, 2, 2)
    net.n_accum_bits = 3
    with pytest.raises(ValueError, match="n_accum_bits=3 is too small"):
        net.enable_pruning()


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


# ---------------------------------------------------------------------- input bits
@pytest.mark.parametrize("rule", ["fan_in", "l1_budget"])
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


def test_auto_input_bits_follow_the_accumulator_budget_of_the_l1_rule():
    def bits(input_dim, **kwargs):
        return SparseQuantNeuralNetwork(input_dim, 3, 2, **kwargs).input_bit_width

    assert bits(6, n_input_bits="auto", accumulator_rule="l1_budget") == 5
    assert bits(10, n_input_bits="auto", accumulator_rule="l1_budget") == 4
    assert bits(30, n_input_bits="auto", accumulator_rule="l1_budget") == 3
    # 3/3 in 6 bits or fewer: one extreme product fills the budget at 3-bit inputs (fan-in
    # 1), so inputs get coarser, down to 2 bits (fan-in 3 at 6 bits, 1 at 5)
    l1_auto = {"n_input_bits": "auto", "accumulator_rule": "l1_budget"}
    for accum, expected in [(5, 2), (6, 2), (7, 3), (8, 3)]:
        assert bits(30, **l1_auto, n_accum_bits=accum) == expected
        assert bits(4, **l1_auto, n_accum_bits=accum) == [2, 2, 4, 5][accum - 5]
    assert bits(30, **l1_auto, n_accum_bits=5, n_w_bits=2, n_a_bits=2) == 2  # never under 2
    # budget_mse may give a neuron's largest weight the code 1: "auto" leaves room for four
    # weights of code +1 at any input codes, whatever the features and weight bits
    mse_auto = {**l1_auto, "weight_scaling": "budget_mse"}
    for accum, expected in [(4, 2), (5, 3), (6, 4), (7, 5), (8, 6), (10, 8), (12, 8)]:
        for input_dim, w_bits in [(30, 3), (4, 3), (30, 2)]:
            got = bits(input_dim, **mse_auto, n_accum_bits=accum, n_w_bits=w_bits, n_a_bits=2)
            assert got == expected
    assert bits(30, **mse_auto, n_accum_bits=6, quant_signed=False) == 3  # [0, 7] x 4 <= 31
    assert bits(30, n_input_bits="auto", n_accum_bits=6, accumulator_rule="fan_in") == 3
    # the fan-in cap counts every input at its extreme code: finer codes only cut it
    assert bits(6, n_input_bits="auto", accumulator_rule="fan_in") == 3
    assert bits(6) == 3 and bits(6, n_input_bits=4) == 4  # None keeps n_a_bits
    net = SparseQuantNeuralNetwork(6, 3, 2, n_input_bits="auto", accumulator_rule="l1_budget")
    assert net.get_config()["n_input_bits"] == "auto"  # what was asked, for clone/pickle
    with warnings.catch_warnings():  # an untrained network's biases may need clamping
        warnings.simplefilter("ignore")
        net.make_pruning_permanent()
    head = OutputHead("regression")
    assert net.to_integer_model(head).config["n_input_bits"] == 5  # what was used


# ---------------------------------------------------------------------- fan-in
@pytest.mark.parametrize(
    ("w_bits", "a_bits", "signed", "narrow", "accum", "expected"),
    [
        (3, 3, True, False, 8, 7),
        (3, 3, False, False, 8, 4),
        (2, 2, True, False, 5, 3),
        (4, 4, True, False, 10, 7),
        (3, 3, True, True, 8, 14),
    ],
)
def test_max_active_neurons(w_bits, a_bits, signed, narrow, accum, expected):
    net = SparseQuantNeuralNetwork(
        3,
        1,
        1,
        n_w_bits=w_bits,
        n_a_bits=a_bits,
        n_accum_bits=accum,
        quant_signed=signed,
        quant_narrow=narrow,
    )
    assert net.max_active_neurons() == expected


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


def test_permanent_pruning_leaves_plain_layers_that_load_into_a_fresh_module():
    torch.manual_seed(0)
    net = SparseQuantNeuralNetwork(10, 3, 2)
    net.enable_pruning()
    x = train_steps(net, 10)
    net.make_pruning_permanent()
    assert not net.pruning_enabled
    keys = list(net.state_dict())
    assert not any(
        "parametrizations" in k or "weight_orig" in k or "weight_mask" in k for k in keys
    )
    fresh = SparseQuantNeuralNetwork(10, 3, 2)
    fresh.load_state_dict(net.state_dict())
    net.eval()
    fresh.eval()
    assert torch.equal(fresh(x), net(x))
    for fc in net.linear_layers():
        assert int((fc.quant_weight().int() != 0).sum(dim=1).max()) <= 7


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


def test_state_saved_with_masks_loads_into_any_structure_and_back():
    """skorch's Checkpoint saves while the masks are attached; LoadInitState loads that
    into a fresh network, load_params after fit into a folded, narrower one."""
    torch.manual_seed(0)
    net = SparseQuantNeuralNetwork(4, 3, 2, n_prune_neurons_percentage=0.5)
    net.enable_pruning()
    x = train_steps(net, 4)
    masked = {name: value.clone() for name, value in net.state_dict().items()}
    net.make_pruning_permanent()
    folded = net.state_dict()
    for target in (SparseQuantNeuralNetwork(4, 3, 2, n_prune_neurons_percentage=0.5), net):
        target.load_state_dict(masked)  # fresh and full width, or folded and narrower
        assert target.pruning_enabled and target.neurons_pruned
        assert target.layer_widths() == [4, 16, 16, 2]
        target.make_pruning_permanent()  # the loaded masks decide: no neuron chosen again
        assert target.layer_widths() == [4, 8, 8, 2]
        for name, value in folded.items():
            torch.testing.assert_close(target.state_dict()[name], value, rtol=0, atol=0)
    fresh = SparseQuantNeuralNetwork(4, 3, 2)
    fresh.load_state_dict(folded)  # plain and narrower: the layers follow the saved widths
    assert fresh.layer_widths() == [4, 8, 8, 2] and fresh.neurons_pruned
    net.eval()
    fresh.eval()
    assert torch.equal(fresh(x), net(x))


def test_structured_pruning_rounds_the_count_down_and_keeps_a_neuron():
    net = SparseQuantNeuralNetwork(
        3, 2, 2, n_hidden_neurons_multiplier=1, n_prune_neurons_percentage=0.9
    )
    net.make_pruning_permanent()
    assert net.fc0.out_features == 1 and net.fc1.in_features == 1
    assert net(torch.randn(5, 3)).shape == (5, 2)


# ---------------------------------------------------------------------- certificate
def assert_certificate_matches_enumeration(net, certificate):
    """Each input's reachable codes are Brevitas' own, and lo/hi of every neuron equal the
    extremes over all input code vectors inside them.

    Layer 0's inputs reach the input quantizer's codes; a later layer's input ``j`` reaches
    the codes that Brevitas' next quantizer gives to ``act(unit_j * A)`` for every ``A`` in
    neuron ``j``'s certified interval. Every hidden code the network computes, on every
    input code vector, lies in those ranges.
    """
    net.eval()
    reach = None
    for layer, layer_certificate in enumerate(certificate.layers):
        weights, bias, (xmin, xmax), unit = brevitas_layer_codes(net, layer)
        weights, bias = np.array(weights), np.array(bias)
        if reach is None:
            reach = [(xmin, xmax)] * weights.shape[1]
            first_inputs = np.array(
                list(itertools.product(range(xmin, xmax + 1), repeat=weights.shape[1]))
            )
            scale = float(net.quant0.act_quant.scale())
            with torch.no_grad():
                codes = net.quant0(torch.as_tensor(first_inputs * scale, dtype=torch.float32))
            np.testing.assert_array_equal(codes.int().numpy(), first_inputs)
            hidden = torch.as_tensor(first_inputs * scale, dtype=torch.float32)
        np.testing.assert_array_equal(layer_certificate.input_low, [low for low, _ in reach])
        np.testing.assert_array_equal(layer_certificate.input_high, [high for _, high in reach])
        all_inputs = np.array(list(itertools.product(*(range(lo, hi + 1) for lo, hi in reach))))
        sums = all_inputs @ weights.T + bias
        np.testing.assert_array_equal(layer_certificate.lo, sums.min(axis=0))
        np.testing.assert_array_equal(layer_certificate.hi, sums.max(axis=0))
        np.testing.assert_array_equal(layer_certificate.fan_in, (weights != 0).sum(axis=1))
        with torch.no_grad():
            quant = getattr(net, f"quant{layer}")
            hidden_codes = quant(hidden).int().numpy()
        assert np.all(hidden_codes >= layer_certificate.input_low)
        assert np.all(hidden_codes <= layer_certificate.input_high)
        if layer < net.n_layers - 1:
            with torch.no_grad():
                hidden = getattr(net, f"act{layer}")(getattr(net, f"fc{layer}")(quant(hidden)))
            reach = [
                reached_codes(net, layer, unit[j], layer_certificate.lo[j], layer_certificate.hi[j])
                for j in range(weights.shape[0])
            ]


@pytest.mark.parametrize(
    ("signed", "narrow", "a_bits"),
    [(True, False, 2), (False, False, 2), (True, True, 3), (False, True, 2)],
)
def test_certificate_equals_brute_force_on_tiny_layers(signed, narrow, a_bits):
    torch.manual_seed(1)
    net = SparseQuantNeuralNetwork(
        4,
        2,
        2,
        n_hidden_neurons_multiplier=1,
        n_a_bits=a_bits,
        quant_signed=signed,
        quant_narrow=narrow,
        n_accum_bits=6,
    )
    train_steps(net, 4)
    certificate = net.make_pruning_permanent()
    assert certificate.holds and certificate.max_bits <= 6
    assert_certificate_matches_enumeration(net, certificate)


def test_certificate_table_as_text_and_frame():
    net = SparseQuantNeuralNetwork(4, 2, 3)
    train_steps(net, 4)
    certificate = net.make_pruning_permanent()
    text = certificate.to_text()
    assert text.splitlines()[0].split() == [
        "layer",
        "neurons",
        "fan_in",
        "input_codes",
        "lo",
        "hi",
        "bits",
    ]
    assert "bound 8 bits: holds" in text
    frame = certificate.to_frame()
    assert list(frame.index) == ["fc0", "fc1"]
    assert frame.loc["fc1", "neurons"] == 3
    assert frame["bits"].max() == certificate.max_bits <= 8


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
    net._repair_layer(0, net.input_code_range, repairs)
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
    rule=st.sampled_from(["fan_in", "l1_budget"]),
    n_input_bits=st.sampled_from([None, "auto", 2, 4, 6]),
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
        )
    except ValueError as error:  # refused: a neuron's largest weight fits no input
        assume("no weight fits the L1 budget" not in str(error))
        raise
    with torch.no_grad():
        for fc in net.linear_layers():
            fc.weight.mul_(torch.rand_like(fc.weight) * 5)
            fc.bias.uniform_(-bias_magnitude, bias_magnitude)
    net.enable_pruning()
    train_steps(net, input_dim, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        certificate = net.make_pruning_permanent()
    recomputed = worst_case_bits(net)
    assert max(recomputed) <= n_accum_bits
    assert certificate.max_bits == max(recomputed)


# ---------------------------------------------------------------------- the L1-budget rule
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
        scale = net._layer_codes(i)[2]
        state[f"fc{i}.bias"] = torch.as_tensor(100.0 * scale, dtype=torch.float32)
    net.load_state_dict(state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a repair warns
        certificate = net.make_pruning_permanent()
    assert net.pruning_repairs == {"weights_dropped": 0, "biases_clamped": 0}
    assert certificate.holds
    np.testing.assert_array_equal(net._layer_codes(0)[1], 100)
