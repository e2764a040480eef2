"""Truncated table inputs (``rounding_threshold_bits``): integer model, files, estimators, FHE."""

import json
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.datasets import load_iris, make_gaussian_quantiles
from sklearn.preprocessing import StandardScaler

from concrete_qnn import IntegerModel, QNNClassifier, load
from concrete_qnn.accumulator import bits_needed, lookup_bits_per_layer, lsbs_to_remove
from concrete_qnn.convert import layer_codes
from concrete_qnn.integer import OutputHead


@pytest.fixture(scope="module")
def fitted(breast_cancer):
    X, y = breast_cancer
    return QNNClassifier(random_state=0, max_epochs=30, rounding_threshold_bits=None).fit(X, y)


def rounded(model, bits):
    return model.module_.to_integer_model(model._output_head(), None, bits)


# ---------------------------------------------------------------------- the rule
def test_lookup_bits_per_layer_validates_and_expands():
    assert lookup_bits_per_layer(None, 2) == [None, None]
    assert lookup_bits_per_layer(4, 2) == [4, 4]
    assert lookup_bits_per_layer([5, None], 2) == [5, None]
    assert lookup_bits_per_layer(np.int64(3), 1) == [3]
    for bad in (0, -1, 2.5, True, "4", [4], [4, 0]):
        with pytest.raises(ValueError, match="rounding_threshold_bits"):
            lookup_bits_per_layer(bad, 2)


@pytest.mark.parametrize(
    ("accumulator_bits", "lookup_bits", "expected"),
    [(8, None, 0), (8, 8, 0), (8, 9, 0), (8, 5, 3), (8, 1, 7), (6, 4, 2)],
)
def test_lsbs_to_remove(accumulator_bits, lookup_bits, expected):
    assert lsbs_to_remove(accumulator_bits, lookup_bits) == expected


# ---------------------------------------------------------------------- integer model
@pytest.mark.parametrize("bits", [None, 7, 6, 5, 4, 3, 1])
def test_tables_hold_the_function_at_each_bucket_centre(fitted, bits):
    """Recompute every table entry in numpy from the module's scales and the certificate."""
    model = fitted
    integer = rounded(model, bits)
    module = model.module_
    for layer in range(integer.n_layers - 1):
        certificate = integer.certificate.layers[layer]
        shift = integer.lsbs_to_remove[layer]
        bound_shift = lsbs_to_remove(module.n_accum_bits, bits)  # what training drops
        assert shift == min(bound_shift, certificate.bits.max() - 1)
        assert certificate.lookup_bits == certificate.bits.max() - shift
        next_scale = float(getattr(module, f"quant{layer + 1}").act_quant.scale())
        low, high = integer.input_range
        for neuron in range(0, len(certificate.lo), 29):
            lo, hi = int(certificate.lo[neuron]), int(certificate.hi[neuron])
            for accumulator in range(lo, hi + 1, 3):
                bucket = accumulator >> shift
                members = [a for a in range(lo, hi + 1) if a >> shift == bucket]
                centre = (members[0] + members[-1]) / 2
                real = np.float32(centre * integer.scales[layer][neuron])
                code = np.clip(np.round(max(real, 0) / np.float32(next_scale)), low, high)
                index = bucket - integer.table_offsets[layer][neuron]
                assert integer.tables[layer][neuron, index] == code


def test_without_rounding_the_model_is_the_torch_module(fitted, breast_cancer):
    X, _ = breast_cancer
    integer = rounded(fitted, None)
    assert integer.lsbs_to_remove == [0, 0]
    fitted.module_.eval()
    with torch.no_grad():
        expected = fitted.module_(torch.as_tensor(X, dtype=torch.float32)).double().numpy()
    assert np.all(np.abs(integer.decision_outputs(X) - expected) <= integer.scales[-1])


@pytest.mark.parametrize("bits", [6, 5, 4])
def test_lookup_reads_the_truncated_accumulator(fitted, breast_cancer, bits):
    """A step by step evaluation with concrete's truncation semantics gives the same codes."""
    X, _ = breast_cancer
    integer = rounded(fitted, bits)
    codes = integer.quantize_input(X)
    for layer in range(integer.n_layers - 1):
        accumulators = integer.accumulate(layer, codes)
        shift = integer.lsbs_to_remove[layer]
        truncated = (accumulators >> shift) << shift  # fhe.truncate_bit_pattern
        index = truncated // 2**shift - integer.table_offsets[layer]
        expected = np.take_along_axis(integer.tables[layer], index.T, axis=1).T
        codes = integer.lookup(layer, accumulators)
        np.testing.assert_array_equal(codes, expected)


def test_a_layer_certified_below_the_bound_drops_the_bits_training_drops(breast_cancer):
    """At a wide bound the fan-in rule certifies layers far narrower than it; their tables
    must drop the low bits training dropped (``n_accum_bits - rounding_threshold_bits``),
    not read finer buckets the network never saw (which scored 0.667 on breast_cancer)."""
    X, y = breast_cancer
    model = QNNClassifier(
        random_state=0,
        max_epochs=8,
        module__accumulator_rule="fan_in",
        module__n_accum_bits=12,
        rounding_threshold_bits=5,
    ).fit(X, y)
    integer, module = model.integer_model_, model.module_
    for layer in model.certificate_.layers[:-1]:
        assert layer.bits.max() < 12
        assert layer.lookup_bits == layer.bits.max() - 7 < 5
    assert integer.lsbs_to_remove == [7, 7]
    with torch.no_grad(), module.eval_mode(), module.rounded_lookups(5):
        learned = module(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy()
    assert np.mean(integer.predict(X) == model.classes_[learned]) >= 0.99
    assert model.score(X, y) >= 0.9


def test_rounding_costs_little_accuracy_on_breast_cancer(fitted, breast_cancer):
    X, y = breast_cancer
    full = np.mean(rounded(fitted, None).predict(X) == y)
    assert np.mean(rounded(fitted, 5).predict(X) == y) >= full - 0.02
    assert np.mean(rounded(fitted, 4).predict(X) == y) >= full - 0.03


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_lookup_equals_the_table_at_the_truncated_value(data):
    """For random weights, tables and shifts, lookup reads T[(A >> k) - offset]."""
    n_in, n_hidden = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 5))
    weights = [
        data.draw(hnp.arrays(np.int64, (n_hidden, n_in), elements=st.integers(-4, 3))),
        data.draw(hnp.arrays(np.int64, (2, n_hidden), elements=st.integers(-4, 3))),
    ]
    biases = [
        data.draw(hnp.arrays(np.int64, (n_hidden,), elements=st.integers(-20, 20))),
        np.zeros(2, dtype=np.int64),
    ]
    lo = biases[0] + np.minimum(weights[0] * -4, weights[0] * 3).sum(axis=1)
    hi = biases[0] + np.maximum(weights[0] * -4, weights[0] * 3).sum(axis=1)
    # the certified width also covers the sum before the bias
    bits = int(np.maximum(bits_needed(lo, hi), bits_needed(lo - biases[0], hi - biases[0])).max())
    shift = data.draw(st.integers(0, bits - 1))
    first, last = lo >> shift, hi >> shift
    width = int((last - first).max()) + 1
    table = data.draw(hnp.arrays(np.int64, (n_hidden, width), elements=st.integers(-4, 3)))
    model = IntegerModel(
        config=dict(
            n_w_bits=3,
            n_a_bits=3,
            n_input_bits=3,
            n_accum_bits=12,
            quant_signed=True,
            quant_narrow=False,
        ),
        input_scale=1.0,
        weights=weights,
        biases=biases,
        scales=[np.ones(n_hidden), np.ones(2)],
        tables=[table],
        table_offsets=[first.astype(np.int64)],
        head=OutputHead("classification", classes=np.array([0, 1])),
        lsbs_to_remove=[shift],
    )
    codes = data.draw(hnp.arrays(np.int64, (5, n_in), elements=st.integers(-4, 3)))
    accumulators = model.accumulate(0, codes)
    expected = table[np.arange(n_hidden)[None, :], (accumulators >> shift) - first[None, :]]
    np.testing.assert_array_equal(model.lookup(0, accumulators), expected)
    assert model.certificate.layers[0].lookup_bits == bits - shift


def test_shift_outside_the_accumulator_is_refused(fitted):
    integer = rounded(fitted, 4)
    arguments = dict(
        config=integer.config,
        input_scale=integer.input_scale,
        weights=integer.weights,
        biases=integer.biases,
        scales=integer.scales,
        tables=integer.tables,
        table_offsets=integer.table_offsets,
        head=integer.head,
    )
    bits = int(integer.certificate.layers[0].bits.max())
    for bad in ([bits, 0], [-1, 0], [1.5, 0], [0]):
        with pytest.raises(ValueError, match="lsbs_to_remove"):
            IntegerModel(**arguments, lsbs_to_remove=bad)
    # The tables were built for the truncated accumulators: without it they do not cover.
    with pytest.raises(ValueError, match="does not cover every certified accumulator"):
        IntegerModel(**arguments, lsbs_to_remove=[0, 0])


# ---------------------------------------------------------------------- files
def test_files_carry_the_truncation(fitted, breast_cancer, tmp_path):
    X, _ = breast_cancer
    fitted.set_params(rounding_threshold_bits=5)
    try:
        fitted.save(tmp_path / "model.npz")
        loaded = load(tmp_path / "model.npz")
        assert loaded.lsbs_to_remove == fitted.integer_model_.lsbs_to_remove != [0, 0]
        np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
        assert loaded.certificate.rows() == fitted.certificate_.rows()
        assert [row["lookup_bits"] for row in loaded.certificate.rows()] == [5, 5, None]
        with np.load(tmp_path / "model.npz", allow_pickle=False) as archive:
            metadata = json.loads(archive["metadata"].tobytes())
        assert metadata["format_version"] == 5
        assert metadata["lsbs_to_remove"] == loaded.lsbs_to_remove
    finally:
        fitted.set_params(rounding_threshold_bits=None)


# ---------------------------------------------------------------------- estimators
def test_set_params_rebuilds_the_integer_model_without_a_refit(fitted, breast_cancer):
    X, _ = breast_cancer
    weights = [w.copy() for w in fitted.integer_model_.weights]
    fitted.set_params(rounding_threshold_bits=4)
    try:
        assert fitted.integer_model_.lsbs_to_remove == [
            lsbs_to_remove(layer.bits.max(), 4) for layer in fitted.certificate_.layers[:-1]
        ]
        for before, after in zip(weights, fitted.integer_model_.weights, strict=True):
            np.testing.assert_array_equal(before, after)
        np.testing.assert_array_equal(fitted.predict(X), rounded(fitted, 4).predict(X))
        model_before = fitted.integer_model_
        with pytest.raises(ValueError, match="rounding_threshold_bits"):
            fitted.set_params(rounding_threshold_bits=0)
        assert fitted.rounding_threshold_bits == 4
        assert fitted.integer_model_ is model_before
    finally:
        fitted.set_params(rounding_threshold_bits=None)


def test_fit_refuses_a_bad_rounding_before_training(breast_cancer):
    X, y = breast_cancer
    model = QNNClassifier(rounding_threshold_bits=[4, 4, 4], max_epochs=1)
    with pytest.raises(ValueError, match="one entry per hidden layer"):
        model.fit(X, y)
    assert not hasattr(model, "module_")


def test_fit_warns_where_a_lookup_keeps_almost_none_of_a_wide_accumulator():
    # Iris at 16-bit accumulators: layers certify far below 16 bits, so the default
    # 5-bit lookups (which drop 11 bits) read 1 or 2 bits of them.
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    wide = QNNClassifier(module__n_accum_bits=16, random_state=0, max_epochs=20)
    with pytest.warns(UserWarning, match="table lookups read almost nothing") as caught:
        wide.fit(X, y)
    hidden = wide.certificate_.layers[:-1]
    coarse = [layer for layer in hidden if layer.lookup_bits <= 2]
    assert coarse
    message = str(next(w.message for w in caught if "almost nothing" in str(w.message)))
    for layer in coarse:
        assert f"{layer.name} reads {layer.lookup_bits} of its {layer.bits.max()} bits" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        wide.set_params(rounding_threshold_bits=13)  # rebuilt at once, reads enough
    assert min(layer.lookup_bits for layer in wide.certificate_.layers[:-1]) > 2
    with pytest.warns(UserWarning, match="almost nothing"):
        wide.set_params(rounding_threshold_bits=5)
    with warnings.catch_warnings():  # no rounding reads every bit
        warnings.simplefilter("error", UserWarning)
        wide.set_params(rounding_threshold_bits=None)


def test_per_layer_rounding(breast_cancer):
    X, y = breast_cancer
    model = QNNClassifier(random_state=0, max_epochs=2, rounding_threshold_bits=[None, 4])
    model.fit(X, y)
    first, second = model.certificate_.layers[:2]
    assert model.integer_model_.lsbs_to_remove[0] == 0
    assert first.lookup_bits == first.bits.max()
    assert second.lookup_bits == 4


# ---------------------------------------------------------------------- training
def hidden_accumulators(module, X):
    """Each hidden layer's accumulators as its linear layer gives them and as its activation
    receives them (eval mode): two lists of float64 arrays (n_rows, n_neurons)."""
    captured = {"fc": [], "act": []}

    def hook(kind, index):
        def record(_, inputs, output):
            value = output if kind == "fc" else inputs[0]
            captured[kind].append(value.detach().double().numpy() / scales[index])

        return record

    hidden = range(module.n_layers - 1)
    scales = [layer_codes(module, i)[2] for i in hidden]
    handles = [
        getattr(module, f"{kind}{i}").register_forward_hook(hook(kind, i))
        for kind in ("fc", "act")
        for i in hidden
    ]
    try:
        with module.eval_mode():
            module(torch.as_tensor(X, dtype=torch.float32))
    finally:
        for handle in handles:
            handle.remove()
    return captured["fc"], captured["act"]


def test_rounded_lookups_move_each_accumulator_to_its_bucket_centre(fitted, breast_cancer):
    X = breast_cancer[0][:100]
    module = fitted.module_
    exact, activated = hidden_accumulators(module, X)
    for before, after in zip(exact, activated, strict=True):
        np.testing.assert_array_equal(before, after)  # no rounding outside the block
    with module.rounded_lookups([5, 3]):
        inside, activated = hidden_accumulators(module, X)
    for layer, (before, after, bits) in enumerate(zip(inside, activated, [5, 3], strict=True)):
        shift = lsbs_to_remove(module.n_accum_bits, bits)
        np.testing.assert_allclose(before, np.round(before), atol=1e-3)  # integers
        expected = np.floor(np.round(before) / 2**shift) * 2**shift + (2**shift - 1) / 2
        np.testing.assert_allclose(after, expected, atol=1e-3, err_msg=f"layer {layer}")
    # Leaving the block, also through an exception, restores the exact forward pass.
    with pytest.raises(RuntimeError), module.rounded_lookups(4):
        raise RuntimeError
    for before, after in zip(exact, hidden_accumulators(module, X)[1], strict=True):
        np.testing.assert_array_equal(before, after)
    with pytest.raises(ValueError, match="rounding_threshold_bits"), module.rounded_lookups(0):
        pass


def test_rounded_lookups_pass_gradients_straight_through(fitted, breast_cancer):
    X = torch.as_tensor(breast_cancer[0][:64], dtype=torch.float32)
    module = fitted.module_
    was_training = module.training
    module.train()
    try:
        with module.rounded_lookups(3):
            module(X).sum().backward()
        gradient = module.fc0.weight.grad
        assert gradient is not None and float(gradient.abs().sum()) > 0
    finally:
        module.zero_grad()
        module.train(was_training)


@pytest.mark.slow
def test_training_with_rounding_in_the_loop_beats_rounding_afterwards():
    """Curved classes whose hidden accumulators use little of their certified width: read
    at 5 bits, the network trained exactly loses most of its accuracy; the same network
    trained through the rounded tables keeps it (measured: 0.615 against 0.455, exact
    reading 0.66). 3-bit inputs, as measured: with the finer inputs of
    ``n_input_bits="auto"`` this small problem does not separate the two (0.69 against
    0.705). ReLU lookups, as measured (6 features would learn theirs: 0.77 against 0.71)."""
    X, y = make_gaussian_quantiles(n_samples=800, n_features=6, n_classes=3, random_state=0)
    train, test = np.arange(len(X)) % 4 != 0, np.arange(len(X)) % 4 == 0
    coarse = {"module__n_input_bits": None, "module__learned_lookups": False}
    aware = QNNClassifier(random_state=0, max_epochs=30, rounding_threshold_bits=5, **coarse)
    aware.fit(X[train], y[train])
    exact = QNNClassifier(random_state=0, max_epochs=30, rounding_threshold_bits=None, **coarse)
    exact.fit(X[train], y[train]).set_params(rounding_threshold_bits=5)
    assert aware.score(X[test], y[test]) >= exact.score(X[test], y[test]) + 0.08


# ---------------------------------------------------------------------- FHE
@pytest.fixture(scope="module")
def compiled_rounded(iris):
    X, y = iris
    model = QNNClassifier(
        random_state=0,
        max_epochs=10,
        module__n_hidden_neurons_multiplier=1,
        module__n_hidden_neurons_min=0,
        rounding_threshold_bits=3,
    )
    return model.fit(X, y).compile(X[:20])


def test_truncated_circuit_keeps_the_certified_width_and_counts_its_bootstraps(compiled_rounded):
    circuit = compiled_rounded.fhe_circuit_
    integer = compiled_rounded.integer_model_
    assert circuit.max_bit_width == compiled_rounded.certificate_.max_bits
    assert any(integer.lsbs_to_remove)
    # Each dropped bit is one small bootstrap, then one lookup per neuron.
    expected = sum(
        table.shape[0] * (1 + shift)
        for table, shift in zip(integer.tables, integer.lsbs_to_remove, strict=True)
    )
    assert circuit.circuit.programmable_bootstrap_count == expected


@pytest.mark.slow
def test_truncated_circuit_simulates_and_executes_exactly(compiled_rounded, iris):
    X, _ = iris
    integer = compiled_rounded.integer_model_
    low, high = integer.input_range
    pick = np.random.default_rng(1).random((1000, integer.n_features_in)) < 0.5
    corners = np.where(pick, low, high) * integer.input_scale
    for rows in (X, corners):
        np.testing.assert_array_equal(
            compiled_rounded.predict_proba(rows, fhe="simulate"),
            compiled_rounded.predict_proba(rows),
        )
    rows = X[[0, 60, 120]]
    np.testing.assert_array_equal(
        compiled_rounded.predict_proba(rows, fhe="execute"), compiled_rounded.predict_proba(rows)
    )
