"""Encrypted inference: simulate and execute agree with the clear integer model."""

import pickle
import sys
import warnings

import numpy as np
import pytest

from concrete_qnn import QNNClassifier, QNNRegressor
from concrete_qnn.nn import LearnedLookup


@pytest.fixture(scope="module")
def compiled(iris):
    """A tiny classifier (4 hidden neurons a layer) keeps key generation short."""
    X, y = iris
    model = QNNClassifier(
        random_state=0,
        max_epochs=10,
        module__n_hidden_neurons_multiplier=1,
        module__n_hidden_neurons_min=0,
    )
    return model.fit(X, y).compile(X[:20])


def corner_inputs(model, n_rows=1000):
    """Rows whose every feature sits at its quantizer's minimum or maximum code."""
    integer = model.integer_model_
    low, high = integer.input_range
    pick = np.random.default_rng(0).random((n_rows, integer.n_features_in)) < 0.5
    return np.where(pick, low, high) * integer.input_scale


def test_circuit_bit_width_is_the_certified_one(compiled):
    circuit = compiled.fhe_circuit_
    assert circuit.max_bit_width <= compiled.module_.n_accum_bits
    assert circuit.max_bit_width == compiled.certificate_.max_bits
    assert circuit.n_table_lookups == 8  # two hidden layers of 4 neurons
    # iris' 4 features learn their lookups by default: these tests run learned tables
    assert isinstance(compiled.module_.act0, LearnedLookup)


@pytest.mark.slow
def test_simulate_equals_disable_on_data_and_corners(compiled, iris):
    X, _ = iris
    for rows in (X, corner_inputs(compiled)):
        np.testing.assert_array_equal(
            compiled.predict_proba(rows, fhe="simulate"), compiled.predict_proba(rows)
        )
        np.testing.assert_array_equal(
            compiled.predict(rows, fhe="simulate"), compiled.predict(rows)
        )
    codes = compiled.integer_model_.quantize_input(corner_inputs(compiled))
    low, high = compiled.integer_model_.input_range
    assert set(np.unique(codes)) == {low, high}


@pytest.mark.slow
def test_execute_equals_disable_and_keys_are_made_once(compiled, iris, monkeypatch):
    X, _ = iris
    rows = X[[0, 75]]
    np.testing.assert_array_equal(
        compiled.predict_proba(rows, fhe="execute"), compiled.predict_proba(rows)
    )
    circuit = compiled.fhe_circuit_.circuit
    monkeypatch.setattr(circuit, "keygen", lambda *a, **k: pytest.fail("keys made twice"))
    np.testing.assert_array_equal(
        compiled.predict(rows[:1], fhe="execute"), compiled.predict(rows[:1])
    )


@pytest.mark.slow
def test_regressor_compiles_and_simulates(iris):
    X, y = iris
    model = QNNRegressor(
        random_state=0,
        max_epochs=5,
        module__n_hidden_neurons_multiplier=1,
        module__n_hidden_neurons_min=0,
    )
    model.fit(X, y.astype(float)).compile(X)
    np.testing.assert_array_equal(model.predict(X, fhe="simulate"), model.predict(X))


def test_uncompiled_and_unknown_modes_are_refused(iris, compiled):
    X, y = iris
    model = QNNClassifier(random_state=0, max_epochs=2).fit(X, y)
    with pytest.raises(RuntimeError, match="not compiled for FHE: call compile"):
        model.predict(X, fhe="simulate")
    with pytest.raises(ValueError, match="fhe must be one of 'disable', 'simulate', 'execute'"):
        compiled.predict(X, fhe="encrypted")


def test_a_refit_needs_a_new_compile(iris):
    X, y = iris
    model = QNNClassifier(
        random_state=0,
        max_epochs=2,
        module__n_hidden_neurons_multiplier=1,
        module__n_hidden_neurons_min=0,
    )
    model.fit(X, y).compile(X[:5]).fit(X, y)
    with pytest.raises(RuntimeError, match="not compiled"):
        model.predict(X, fhe="simulate")


@pytest.mark.slow
def test_pickling_drops_the_circuit_with_a_warning_and_compile_rebuilds_it(compiled, iris):
    """compile() without data traces the corners of the input range; the certificate sizes
    the accumulators, so the circuit is the one compile(X) builds."""
    with pytest.warns(UserWarning, match=r"circuit does not pickle.*call compile\(\)"):
        restored = pickle.loads(pickle.dumps(compiled))
    assert not hasattr(restored, "fhe_circuit_")
    np.testing.assert_array_equal(restored.predict(iris[0]), compiled.predict(iris[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing was compiled: nothing to say
        pickle.loads(pickle.dumps(restored))
    restored.compile()
    X = np.vstack([iris[0], corner_inputs(restored, 50)])
    np.testing.assert_array_equal(restored.predict(X, fhe="simulate"), restored.predict(X))
    assert restored.fhe_circuit_.max_bit_width == compiled.fhe_circuit_.max_bit_width


def test_missing_extra_says_how_to_install(compiled, iris, monkeypatch):
    monkeypatch.setitem(sys.modules, "concrete", None)
    with pytest.raises(ImportError, match=r"pip install 'concrete-qnn\[fhe\]'"):
        compiled.compile(iris[0])


def test_an_output_the_input_set_never_made_negative_still_decrypts_negative():
    """concrete types a value signed only if the compile input set made it negative. Here
    ``x0 - x1`` is 0 on both corner rows and 3 on the one data row, yet reaches -7: the
    circuit returns it minus its certified lower end, so the unsigned result is right."""
    from concrete_qnn.fhe import FHECircuit
    from concrete_qnn.integer import IntegerModel, OutputHead

    integer = IntegerModel(
        config=dict(
            n_w_bits=3,
            n_a_bits=3,
            n_input_bits=3,
            n_accum_bits=8,
            quant_signed=True,
            quant_narrow=False,
        ),
        input_scale=1.0,
        weights=[np.array([[1, -1]], dtype=np.int64)],
        biases=[np.zeros(1, dtype=np.int64)],
        scales=[np.ones(1)],
        tables=[],
        table_offsets=[],
        head=OutputHead("regression", target_ndim=2),
    )
    circuit = FHECircuit(integer, np.array([[3, 0]]))
    np.testing.assert_array_equal(circuit.output_offsets, [-7])
    codes = np.array([[0, 3], [-4, 3], [3, -4], [1, 1]])
    expected = codes @ integer.weights[0].T
    np.testing.assert_array_equal(circuit.run(codes, "simulate"), expected)
    np.testing.assert_array_equal(circuit.run(codes[:2], "execute"), expected[:2])


@pytest.mark.slow
def test_a_refused_load_params_keeps_the_compiled_circuit(iris, tmp_path):
    X, y = iris
    tiny = {
        "random_state": 0,
        "max_epochs": 5,
        "module__n_hidden_neurons_multiplier": 1,
        "module__n_hidden_neurons_min": 0,
    }
    QNNClassifier(**tiny).fit(X, y).save_params(f_params=tmp_path / "max8.pt")
    # 64 hidden neurons a layer (the default width): the tiny network takes their widths
    mse8 = QNNClassifier(random_state=0, max_epochs=5, module__weight_scaling="budget_mse")
    mse8.fit(X, y).save_params(f_params=tmp_path / "mse8.pt")
    model = QNNClassifier(**tiny, module__n_accum_bits=6).fit(X, y).compile(X[:20])
    circuit, expected = model.fhe_circuit_, model.predict_proba(X)
    with pytest.raises(ValueError, match="saved with weight_scaling='max'"):
        model.load_params(f_params=tmp_path / "max8.pt")
    assert model.fhe_circuit_ is circuit
    # the same scaling and layers, but 64-wide and trained under 8 bits: they break 6 bits
    with pytest.raises(ValueError, match=r"nothing was loaded, .* bound .* n_accum_bits is 6"):
        model.load_params(f_params=tmp_path / "mse8.pt")
    assert model.fhe_circuit_ is circuit
    assert model.module_.layer_widths() == [4, 4, 4, 3]
    np.testing.assert_array_equal(model.predict_proba(X), expected)
    np.testing.assert_array_equal(model.predict_proba(X[:5], fhe="simulate"), expected[:5])
