"""Learned lookups (``learned_lookups=True``): each hidden neuron learns its table's function."""

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from concrete_qnn import QNNClassifier, SparseQuantNeuralNetwork
from concrete_qnn.integer import OutputHead
from concrete_qnn.nn.lookups import N_KNOTS, LearnedLookup
from tests.network_helpers import train_steps


def network(**overrides):
    settings = dict(
        input_dim=5,
        n_layers=3,
        n_outputs=2,
        n_hidden_neurons_multiplier=2,
        accumulator_rule="l1_budget",
        learned_lookups=True,
    )
    return SparseQuantNeuralNetwork(**{**settings, **overrides})


def bend(net, seed=0, size=0.5):
    """Give every learned function a random non-monotone shape."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in range(net.n_layers - 1):
            offsets = getattr(net, f"act{layer}").offsets
            offsets.copy_(torch.randn(offsets.shape, generator=generator) * size)


def head():
    return OutputHead("classification", classes=np.array([0, 1]))


def test_starts_as_the_fixed_activation():
    """Before training, a learned network computes what the ReLU network does."""
    torch.manual_seed(0)
    learned = network()
    fixed = network(learned_lookups=False)
    fixed.load_state_dict(
        {k: v for k, v in learned.state_dict().items() if ".offsets" not in k}, strict=False
    )
    x = torch.randn(256, 5) * 2
    with learned.eval_mode():
        with learned.rounded_lookups(5):
            expected_learned = learned(x)
    with fixed.eval_mode(), fixed.rounded_lookups(5):
        expected_fixed = fixed(x)
    torch.testing.assert_close(expected_learned, expected_fixed, rtol=1e-5, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    z=st.lists(st.floats(-3.0, 3.0), min_size=1, max_size=20),
    unit=st.floats(0.01, 4.0),
    values=st.lists(st.floats(-2.0, 2.0), min_size=N_KNOTS, max_size=N_KNOTS),
)
def test_interpolates_between_its_knots(z, unit, values):
    """``unit * g(z / unit)``, clipped at 0: ``np.interp`` over the knots, ends held."""
    lookup = LearnedLookup(1)
    with torch.no_grad():
        lookup.offsets.copy_(torch.tensor([values]) - lookup.start)
    with torch.no_grad():
        got = lookup(torch.tensor(z)[:, None], torch.tensor([unit])).numpy()[:, 0]
    knots = np.linspace(-1, 1, N_KNOTS)
    expected = np.maximum(unit * np.interp(np.clip(np.array(z) / unit, -1, 1), knots, values), 0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * unit)


def test_not_clipped_after_an_activation_that_can_be_negative():
    net = network(activation_function=torch.nn.Tanh)
    assert not net.act0.non_negative
    assert net.config.budget_input_ranges()[1][0] < 0
    assert network().act0.non_negative
    assert network().config.budget_input_ranges()[1][0] == 0


@pytest.mark.parametrize("rounding", [None, 5])
def test_integer_model_reads_the_learned_functions(rounding):
    """The tables hold each neuron's own learned function: the integer model agrees with
    the module in eval mode, and a bent function changes the tables."""
    torch.manual_seed(0)
    net = network()
    net.enable_pruning()
    x = train_steps(net, 5)
    bend(net)
    net.make_pruning_permanent()
    integer = net.to_integer_model(head(), rounding_threshold_bits=rounding)
    with net.eval_mode(), net.rounded_lookups(rounding):
        expected = net(x).double().numpy()
    outputs = integer.decision_outputs(x.numpy())
    assert np.mean(outputs.argmax(1) == expected.argmax(1)) >= 0.99
    unbent = network()
    unbent.load_state_dict(
        {k: v for k, v in net.state_dict().items() if ".offsets" not in k}, strict=False
    )
    tables = unbent.to_integer_model(head(), rounding_threshold_bits=rounding).tables
    assert any(not np.array_equal(a, b) for a, b in zip(tables, integer.tables, strict=True))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.floats(0.1, 3.0))
def test_certificate_holds_whatever_the_functions(seed, size):
    """Bent functions reach other codes; the certificate reads them from the tables, and
    its bound holds on every hidden code the integer model computes."""
    torch.manual_seed(seed)
    net = network(n_accum_bits=7)
    net.enable_pruning()
    x = train_steps(net, 5, seed=seed)
    bend(net, seed, size)
    certificate = net.make_pruning_permanent()
    assert certificate.holds
    integer = net.to_integer_model(head(), rounding_threshold_bits=5)
    codes = integer.quantize_input(x.numpy() * 3)
    for layer in range(integer.n_layers):
        accumulators = integer.accumulate(layer, codes)
        low, high = certificate.layers[layer].lo, certificate.layers[layer].hi
        assert np.all((accumulators >= low) & (accumulators <= high))
        if layer < integer.n_layers - 1:
            codes = integer.lookup(layer, accumulators)
            assert codes.min() >= 0  # after ReLU the learned functions stay non-negative


def test_structured_pruning_keeps_each_kept_neurons_function():
    torch.manual_seed(0)
    net = network(n_prune_neurons_percentage=0.5)
    bend(net)
    before = net.act0.offsets.detach().clone()
    net.enable_pruning()
    net.make_pruning_permanent()
    kept = net.fc0.out_features
    assert kept < 10 and net.act0.width == kept
    rows = [any(torch.equal(row, old) for old in before) for row in net.act0.offsets]
    assert all(rows)


def test_pickles_and_loads_with_its_functions():
    torch.manual_seed(0)
    net = network(n_prune_neurons_percentage=0.5)
    net.enable_pruning()
    train_steps(net, 5)
    bend(net)
    net.make_pruning_permanent()
    copy = pickle.loads(pickle.dumps(net))
    torch.testing.assert_close(copy.act1.offsets, net.act1.offsets)
    fresh = network()
    fresh(torch.randn(2, 5))  # Brevitas creates its scale parameters on a first pass
    fresh.load_state_dict(net.state_dict())
    assert fresh.act0.width == net.act0.width
    x = torch.randn(32, 5)
    with net.eval_mode(), fresh.eval_mode():
        torch.testing.assert_close(fresh(x), net(x))


def test_estimator_learns_the_functions(breast_cancer):
    X, y = breast_cancer
    model = QNNClassifier(random_state=0, max_epochs=5, module__learned_lookups=True).fit(X, y)
    offsets = model.module_.act0.offsets
    assert float(offsets.abs().max()) > 0.01  # the functions moved off ReLU
    assert model.certificate_.holds
    assert model.score(X, y) >= 0.93
    assert model.get_params()["module__learned_lookups"] is True


def test_auto_learns_the_lookups_of_few_features_only():
    """``"auto"`` (the estimators' default) learns them up to 8 features."""
    assert network(input_dim=8, learned_lookups="auto").learned_lookups_used is True
    assert isinstance(network(input_dim=8, learned_lookups="auto").act0, LearnedLookup)
    assert network(input_dim=9, learned_lookups="auto").learned_lookups_used is False
    assert isinstance(network(input_dim=9, learned_lookups="auto").act0, torch.nn.ReLU)
    assert network(input_dim=30, learned_lookups=np.bool_(True)).learned_lookups_used is True
    assert network(learned_lookups=False).get_config()["learned_lookups"] is False


@pytest.mark.parametrize("bad", ["yes", 1, None, "Auto"])
def test_other_values_are_refused(bad):
    with pytest.raises(ValueError, match="learned_lookups must be True, False or 'auto'"):
        network(learned_lookups=bad)
