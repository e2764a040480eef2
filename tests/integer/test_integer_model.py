"""The integer model: agreement with torch, exactness, certificate, safe files."""

import json
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn import datasets
from sklearn.preprocessing import StandardScaler

from concrete_qnn import IntegerModel, QNNClassifier, QNNRegressor, load
from concrete_qnn.exceptions import AccumulatorBoundError, ModelFileError

DATASETS = {
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
    "digits": datasets.load_digits,
    "diabetes": datasets.load_diabetes,
}

# Fits of more than ~3 s each.
SLOW_DATASETS = ("breast_cancer", "digits")


def standardized(name):
    X, y = DATASETS[name](return_X_y=True)
    X = StandardScaler().fit_transform(X)
    if name == "diabetes":
        y = (y - y.mean()) / y.std()
    return X, y


def fit(name, max_epochs=3, rounding_threshold_bits=None, **module):
    """Fitted without rounding by default: the integer model is then the torch module's."""
    X, y = standardized(name)
    estimator = QNNRegressor if name == "diabetes" else QNNClassifier
    params = {f"module__{key}": value for key, value in module.items()}
    model = estimator(
        random_state=0,
        max_epochs=max_epochs,
        rounding_threshold_bits=rounding_threshold_bits,
        **params,
    )
    return model.fit(X, y), X, y


@pytest.fixture(scope="module")
def digits_model():
    return fit("digits", max_epochs=5)


@pytest.fixture(scope="module")
def regressor():
    return fit("diabetes", max_epochs=5)


# ---------------------------------------------------------------------- agreement
@pytest.mark.filterwarnings("ignore:make_pruning_permanent repaired")
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", [(2, 2, 5), (3, 3, 8), (4, 4, 10)])
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW_DATASETS else name
        for name in DATASETS
    ],
)
def test_integer_model_agrees_with_the_torch_module(name, bits, signed):
    n_w_bits, n_a_bits, n_accum_bits = bits
    model, X, _ = fit(
        name, n_w_bits=n_w_bits, n_a_bits=n_a_bits, n_accum_bits=n_accum_bits, quant_signed=signed
    )
    model.module_.eval()
    with torch.no_grad():
        torch_outputs = model.module_(torch.as_tensor(X, dtype=torch.float32)).double().numpy()
    integer = model.integer_model_
    outputs = integer.decision_outputs(X)
    step = integer.scales[-1]
    assert np.all(np.abs(outputs - torch_outputs) <= step)
    if name != "diabetes":
        # Within one step, the two can only rank differently where torch's two largest
        # outputs are within two steps of each other (a near tie).
        same = outputs.argmax(axis=1) == torch_outputs.argmax(axis=1)
        top_two = np.sort(torch_outputs, axis=1)[:, -2:]
        clear = top_two[:, 1] - top_two[:, 0] > 2 * np.max(step)
        assert same[clear].all()
        # An exact tie of the integer outputs has no label to agree on: torch's float sums
        # may break it by 1e-8 (iris at 2/2/5: 0 against 7.45e-09)
        top_two_integer = np.sort(outputs, axis=1)[:, -2:]
        tied = top_two_integer[:, 1] == top_two_integer[:, 0]
        assert same[~tied].mean() >= 0.998
        np.testing.assert_array_equal(model.predict(X), model.classes_[outputs.argmax(axis=1)])


@pytest.mark.slow  # the first to fit digits_model and regressor
def test_estimator_predictions_come_from_the_integer_model(digits_model, regressor):
    model, X, _ = digits_model
    np.testing.assert_array_equal(model.predict(X), model.integer_model_.predict(X))
    np.testing.assert_array_equal(model.predict_proba(X), model.integer_model_.predict_proba(X))
    reg, X_reg, y_reg = regressor
    np.testing.assert_array_equal(reg.predict(X_reg), reg.integer_model_.predict(X_reg))
    assert reg.predict(X_reg).shape == y_reg.shape


def test_float64_blas_and_int64_paths_are_identical(digits_model):
    model, X, _ = digits_model
    integer = model.integer_model_
    assert all(integer._exact_in_float64)
    codes = integer.quantize_input(X)
    for layer in range(integer.n_layers):
        fast = integer.accumulate(layer, codes)
        exact = codes @ integer.weights[layer].T + integer.biases[layer]
        np.testing.assert_array_equal(fast, exact)
        if layer < integer.n_layers - 1:
            codes = integer.lookup(layer, fast)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_input_stays_inside_the_certified_intervals(digits_model, data):
    model, _, _ = digits_model
    integer = model.integer_model_
    X = data.draw(
        hnp.arrays(
            np.float64,
            (8, integer.n_features_in),
            elements=st.one_of(
                st.floats(-1e6, 1e6), st.sampled_from([-1e30, 1e30, 0.0, -0.5, 0.5])
            ),
        )
    )
    certificate = integer.observed_certificate(X)
    for layer in certificate.layers:
        low, high = layer.observed
        assert layer.lo.min() <= low <= high <= layer.hi.max()


def test_corner_inputs_reach_the_input_code_extremes(digits_model):
    model, _, _ = digits_model
    integer = model.integer_model_
    low, high = integer.input_range
    corners = np.where(np.random.default_rng(0).random((1000, 64)) < 0.5, -1e9, 1e9)
    codes = integer.quantize_input(corners)
    assert set(np.unique(codes)) == {low, high}
    assert integer.predict(corners).shape == (1000,)


def test_one_million_rows_in_batches_under_one_gigabyte(regressor):
    model, _, _ = regressor
    integer = model.integer_model_
    X = np.random.default_rng(0).standard_normal((1_000_000, integer.n_features_in))
    X = X.astype(np.float32)
    tracemalloc.start()
    predictions = integer.predict(X)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert predictions.shape == (1_000_000,)
    assert peak < 1e9


# ---------------------------------------------------------------------- certificate
def test_certificate_with_observed_ranges(digits_model):
    model, X, _ = digits_model
    certificate = model.accumulator_certificate(X)
    frame = certificate.to_frame()
    assert list(frame.columns) == [
        "neurons",
        "fan_in",
        "input_codes",
        "lo",
        "hi",
        "bits",
        "lookup_bits",
        "observed_lo",
        "observed_hi",
    ]
    assert (frame["lo"] <= frame["observed_lo"]).all()
    assert (frame["observed_hi"] <= frame["hi"]).all()
    assert "observed_lo" in certificate.to_text()
    # The module's certificate is the integer model's, less the lookups between layers.
    rows = [
        {key: value for key, value in row.items() if key != "lookup_bits"}
        for row in model.certificate_.rows()
    ]
    assert rows == model.module_.accumulator_certificate(model.rounding_threshold_bits).rows()


# ---------------------------------------------------------------------- files
@pytest.mark.parametrize("which", ["classifier", "regressor"])
def test_save_and_load_give_identical_predictions(digits_model, regressor, which, tmp_path):
    model, X, _ = digits_model if which == "classifier" else regressor
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = load(path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.certificate.rows() == model.certificate_.rows()
    with np.load(path, allow_pickle=False) as archive:
        metadata = json.loads(archive["metadata"].tobytes())
    assert metadata["format_version"] == 5
    assert metadata["config"]["n_accum_bits"] == 8


@pytest.mark.slow  # fits
def test_string_labels_and_feature_names_survive_a_file(tmp_path):
    import pandas as pd

    X, y = standardized("iris")
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    model = QNNClassifier(random_state=0, max_epochs=3).fit(frame, labels)
    model.save(tmp_path / "iris.npz")
    loaded = load(tmp_path / "iris.npz")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(frame))
    np.testing.assert_array_equal(loaded.feature_names, ["sl", "sw", "pl", "pw"])


def test_loading_and_predicting_never_imports_torch(digits_model, tmp_path):
    model, X, _ = digits_model
    model.save(tmp_path / "model.npz")
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", model.predict(X))
    script = (
        "import sys, numpy as np\n"
        "import concrete_qnn\n"
        f"model = concrete_qnn.load({str(tmp_path / 'model.npz')!r})\n"
        f"X = np.load({str(tmp_path / 'X.npy')!r})\n"
        f"expected = np.load({str(tmp_path / 'expected.npy')!r})\n"
        "assert (model.predict(X) == expected).all()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def rewrite(path, edit):
    """Load a model file's arrays and metadata, apply ``edit``, write it back."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    metadata = json.loads(arrays["metadata"].tobytes())
    edit(arrays, metadata)
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def break_the_bound(arrays, metadata):
    weight = arrays["weight_1"].copy()
    weight[0, :] = 3  # every input of neuron 0 at the largest code
    arrays["weight_1"] = weight


def stretch_a_code(arrays, metadata):
    weight = arrays["weight_0"].copy()
    weight[0, 0] = 9
    arrays["weight_0"] = weight


def bump_the_version(arrays, metadata):
    metadata["format_version"] = 99


def float_weights(arrays, metadata):
    arrays["weight_0"] = arrays["weight_0"].astype(np.float64)


def drop_a_table(arrays, metadata):
    del arrays["table_1"]


def forge_the_certificate(arrays, metadata):
    metadata["certificate"][0]["hi"] -= 1


def shrink_a_table(arrays, metadata):
    arrays["table_0"] = arrays["table_0"][:, :3]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (break_the_bound, "weights break the accumulator bound"),
        (stretch_a_code, r"weights\[0\] has codes in .* outside the 3-bit weight codes"),
        (bump_the_version, "format version 99"),
        (float_weights, r"weights\[0\] must be a numpy array of int64, got float64"),
        (drop_a_table, "lacks the entry 'table_1'"),
        (forge_the_certificate, "stored certificate does not match"),
        (shrink_a_table, r"tables\[0\] does not cover every certified accumulator value"),
    ],
)
def test_tampered_files_are_refused(digits_model, tmp_path, edit, message):
    model, _, _ = digits_model
    path = tmp_path / "model.npz"
    model.save(path)
    rewrite(path, edit)
    with pytest.raises(ModelFileError, match=message):
        load(path)


def test_weights_that_break_the_bound_are_an_accumulator_bound_error(digits_model):
    integer = digits_model[0].integer_model_
    arrays = {"weight_1": integer.weights[1]}
    break_the_bound(arrays, None)
    with pytest.raises(AccumulatorBoundError, match="the weights break the accumulator bound"):
        IntegerModel(
            integer.config,
            integer.input_scale,
            [integer.weights[0], arrays["weight_1"], integer.weights[2]],
            integer.biases,
            integer.scales,
            integer.tables,
            integer.table_offsets,
            integer.head,
        )


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """A loaded model fitted on columns ``age, income`` (the label depends on income only),
    the training frame and the estimator."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.normal(size=200), "income": rng.normal(size=200)})
    y = (frame["income"] > 0).to_numpy().astype(int)
    model = QNNClassifier(random_state=0, max_epochs=5, lr=0.05, module__n_hidden_neurons_min=0)
    model.fit(frame, y)
    assert np.mean(model.predict(frame) == y) > 0.85
    path = tmp_path_factory.mktemp("named") / "named.npz"
    model.save(path)
    return load(path), frame, model


@pytest.mark.filterwarnings("error")
def test_a_loaded_model_reads_dataframe_columns_by_name(named):
    loaded, frame, model = named
    reordered = frame[["income", "age"]]
    expected = model.predict(frame)
    np.testing.assert_array_equal(loaded.predict(reordered), expected)
    np.testing.assert_array_equal(loaded.predict_proba(reordered), model.predict_proba(frame))
    np.testing.assert_array_equal(
        loaded.decision_outputs(reordered), loaded.decision_outputs(frame)
    )
    np.testing.assert_array_equal(loaded.quantize_input(reordered), loaded.quantize_input(frame))
    assert (
        loaded.observed_certificate(reordered).rows() == loaded.observed_certificate(frame).rows()
    )
    # read by position, the swapped columns would give other labels: the test can tell
    assert np.mean(loaded.predict(reordered.to_numpy()) == expected) < 0.8
    # an array is read by position, without a warning
    np.testing.assert_array_equal(loaded.predict(frame.to_numpy()), expected)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["age"], r"feature names seen at fit time, yet now missing: \['income'\]"),
        (["age", "income", "height"], r"feature names unseen at fit time: \['height'\]"),
        (["age", "salary"], r"unseen at fit time: \['salary'\]; .* missing: \['income'\]"),
        (["age", "income", "age"], r"feature names repeated: \['age'\]"),
    ],
    ids=["missing", "unknown", "renamed", "repeated"],
)
def test_missing_unknown_or_repeated_names_are_refused(named, columns, message):
    loaded, frame, _ = named
    X = frame.assign(height=1.0, salary=frame["income"])[columns]
    for method in (loaded.predict, loaded.predict_proba, loaded.observed_certificate):
        with pytest.raises(ValueError, match="should match those that were passed during fit"):
            method(X)
    with pytest.raises(ValueError, match=message):
        loaded.predict(X)


def test_unnamed_columns_and_unnamed_models_are_read_by_position(named, iris):
    import pandas as pd

    loaded, frame, model = named
    unnamed = pd.DataFrame(frame.to_numpy())  # integer column names: not feature names
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        np.testing.assert_array_equal(loaded.predict(unnamed), model.predict(frame))
    with pytest.raises(ValueError, match="column names of mixed types"):
        loaded.predict(frame.set_axis(["age", 1], axis=1))
    X, y = iris
    without_names = QNNClassifier(random_state=0, max_epochs=1).fit(X, y).integer_model_
    assert without_names.feature_names is None
    named_frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    with pytest.warns(UserWarning, match="X has feature names, but the model was fitted without"):
        np.testing.assert_array_equal(without_names.predict(named_frame), without_names.predict(X))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(
            without_names.predict(pd.DataFrame(X)), without_names.predict(X)
        )


def test_nan_at_integer_predict_is_a_value_error(named):
    loaded, frame, _ = named
    X = frame.to_numpy(copy=True)
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        loaded.predict(X)


def test_pd_na_of_a_nullable_column_is_refused_as_nan(named):
    import pandas as pd

    loaded, frame, _ = named
    X = frame.assign(age=pd.array(np.round(frame["age"]), dtype="Int64"))
    np.testing.assert_array_equal(loaded.predict(X), loaded.predict(X.astype(float)))
    X.loc[3, "age"] = pd.NA
    for method in (loaded.predict, loaded.quantize_input):
        with pytest.raises(ValueError, match="Input X contains NaN"):
            method(X)
    with pytest.raises(ValueError, match="Input X holds a value that is not a number"):
        loaded.predict(X.to_numpy())  # an object array holding pd.NA


def test_wrong_feature_count_at_integer_predict(digits_model):
    model, X, _ = digits_model
    with pytest.raises(ValueError, match="X has 10 features, but the model is expecting 64"):
        model.integer_model_.predict(X[:, :10])


def test_integer_model_refuses_inconsistent_arrays(digits_model):
    integer = digits_model[0].integer_model_
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
    IntegerModel(**arguments)
    width = integer.weights[0].shape[0]
    with pytest.raises(ValueError, match=rf"weights\[1\] has 7 inputs but layer 0 has {width}"):
        IntegerModel(
            **{
                **arguments,
                "weights": [integer.weights[0], integer.weights[1][:, :7], integer.weights[2]],
            }
        )
    with pytest.raises(ValueError, match="input_scale must be positive"):
        IntegerModel(**{**arguments, "input_scale": -1.0})
    with pytest.raises(ValueError, match=r"scales\[2\] must be positive"):
        IntegerModel(**{**arguments, "scales": [*integer.scales[:2], -integer.scales[2]]})


@pytest.mark.slow  # fits
def test_standardization_inside_the_model_matches_a_scaler_outside(tmp_path):
    X, y = datasets.load_wine(return_X_y=True)
    scaler = StandardScaler().fit(X)
    model = QNNClassifier(random_state=0, max_epochs=3).fit(scaler.transform(X), y)
    raw = model.integer_model_.with_standardization(scaler.mean_, scaler.scale_)
    np.testing.assert_array_equal(raw.predict(X), model.predict(scaler.transform(X)))
    raw.save(tmp_path / "raw.npz")
    np.testing.assert_array_equal(load(tmp_path / "raw.npz").predict(X), raw.predict(X))
    with pytest.raises(ValueError, match="feature_std must be positive"):
        model.integer_model_.with_standardization(scaler.mean_, -scaler.scale_)


def test_regression_targets_are_unstandardized(regressor):
    model, X, _ = regressor
    integer = model.integer_model_
    shifted = integer.with_standardization(np.zeros(10), np.ones(10), 100.0, 50.0)
    np.testing.assert_allclose(shifted.predict(X), integer.predict(X) * 50.0 + 100.0)
