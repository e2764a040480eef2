"""A fitted Pipeline deployed whole (``deploy.save_fhe``, ``deploy.compile``): its scalers
travel in the client artifact as data, so raw rows give ``pipeline.predict`` (#31); rows far
outside the input quantizer's range warn; the client's labels keep the estimator's dtype."""

import functools
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)

from concrete_qnn import QNNClassifier, deploy
from concrete_qnn.deploy import FHEClient, FHEServer
from concrete_qnn.deploy.artifacts import ClientArtifact, _write_json
from concrete_qnn.deploy.preprocessing import split
from concrete_qnn.exceptions import InputRangeWarning, InvalidParameterError
from concrete_qnn.integer.formats import FHE_CLIENT, io_from_json, io_to_json

TINY = {
    "random_state": 0,
    "max_epochs": 3,
    "module__n_layers": 2,
    "module__n_hidden_neurons_min": 4,
    "module__n_hidden_neurons_multiplier": 1,
    "module__n_w_bits": 2,
    "module__n_a_bits": 2,
    "module__n_accum_bits": 6,
}
LABELS = np.array(["benign", "malignant"], dtype=object)


@pytest.fixture(scope="module")
def raw():
    """Raw rows on five different scales, named a..e, and object-dtype string labels."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)) * [1, 10, 100, 0.5, 1000] + [5, -20, 300, 0, 50]
    X = pd.DataFrame(X, columns=list("abcde"))
    standardized = (X - X.mean()) / X.std()
    y = LABELS[(standardized["a"] + standardized["c"] - standardized["b"] > 0).to_numpy(int)]
    return X, standardized.to_numpy(), y


@pytest.fixture(scope="module")
def estimators(raw):
    """Tiny classifiers fitted on standardized rows of 4 and 5 features, by feature count."""
    _, standardized, y = raw
    return {n: QNNClassifier(**TINY).fit(standardized[:, :n], y) for n in (4, 5)}


def predict_from_codes(model, io, codes):
    """What the client predicts for input codes: the integer network, then its head."""
    for layer in range(model.n_layers):
        accumulators = model.accumulate(layer, codes)
        if layer < model.n_layers - 1:
            codes = model.lookup(layer, accumulators)
    return io.predictions(io.dequantize_output(accumulators))


PANDAS = {"transform": "pandas"}
SUPPORTED = {
    "StandardScaler": [StandardScaler()],
    "StandardScaler(with_mean=False)": [StandardScaler(with_mean=False)],
    "MinMaxScaler": [MinMaxScaler(feature_range=(-1, 1))],
    "MaxAbsScaler": [MaxAbsScaler()],
    "RobustScaler": [RobustScaler()],
    "a chain of scalers, one a nested Pipeline": [
        MinMaxScaler(),
        make_pipeline(RobustScaler(with_centering=False), StandardScaler()),
    ],
    "ColumnTransformer: reorder, drop, passthrough, weights": [
        StandardScaler().set_output(**PANDAS),
        ColumnTransformer(
            [("s", StandardScaler(), ["c", "a"]), ("p", "passthrough", ["d"]), ("x", "drop", [4])],
            remainder=MaxAbsScaler(),
            transformer_weights={"s": 2.0},
        ),
    ],
    "ColumnTransformer: remainder passthrough, then a scaler": [
        ColumnTransformer([("r", RobustScaler(), [0, 1, 2])], remainder="passthrough"),
        StandardScaler(),
    ],
}


@pytest.mark.parametrize("steps", SUPPORTED.values(), ids=SUPPORTED.keys())
def test_the_client_applies_each_supported_step_exactly_as_the_pipeline(raw, estimators, steps):
    X, _, _ = raw
    head = Pipeline([(f"step{i}", step) for i, step in enumerate(steps)]).fit(X)
    n_features = head.transform(X[:1]).shape[1]
    pipeline = Pipeline([*head.steps, ("qnn", estimators[n_features])])
    estimator, io = split(pipeline)
    io = io_from_json(json.loads(json.dumps(io_to_json(io))))  # as client.json holds it
    assert io.n_columns == 5 and list(io.feature_names) == list("abcde")
    codes = io.quantize_input(X)
    expected = estimator.integer_model_.quantize_input(head.transform(X).astype(np.float32))
    np.testing.assert_array_equal(codes, expected)
    assert len(np.unique(codes)) > 3  # the rows are on the quantizer's scale, not clipped
    predictions = predict_from_codes(estimator.integer_model_, io, codes)
    np.testing.assert_array_equal(predictions, pipeline.predict(X))
    assert predictions.dtype == pipeline.predict(X).dtype == object


class Doubled(StandardScaler):
    def transform(self, X, copy=None):
        return 2 * super().transform(X, copy)


REFUSED = {
    "PCA": ([PCA(n_components=5)], r"'step0' \(PCA\)"),
    "PolynomialFeatures": ([PolynomialFeatures(degree=2)], r"'step0' \(PolynomialFeatures\)"),
    "FunctionTransformer": ([FunctionTransformer(np.tanh)], r"'step0' \(FunctionTransformer\)"),
    "a scaler's subclass": ([Doubled()], r"'step0' \(Doubled\)"),
    "MinMaxScaler(clip=True)": ([MinMaxScaler(clip=True)], r"'step0' \(MinMaxScaler\).*clip"),
    "PCA in a ColumnTransformer": (
        [ColumnTransformer([("pca", PCA(n_components=2), [0, 1])], remainder="passthrough")],
        r"'step0/pca' \(PCA\)",
    ),
    "a nested Pipeline's PolynomialFeatures": (
        [make_pipeline(StandardScaler(), PolynomialFeatures())],
        r"'step0/polynomialfeatures' \(PolynomialFeatures\)",
    ),
}


@pytest.mark.parametrize(("steps", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_a_step_that_is_not_a_per_feature_affine_map_is_refused_by_name(
    raw, estimators, tmp_path, steps, message
):
    X, _, _ = raw
    head = Pipeline([(f"step{i}", step) for i, step in enumerate(steps)]).fit(X)
    pipeline = Pipeline([*head.steps, ("qnn", estimators[5])])
    with pytest.raises(InvalidParameterError, match=message):
        deploy.save_fhe(pipeline, tmp_path / "deployed")
    with pytest.raises(ValueError, match=message):
        deploy.compile(pipeline, X)
    assert not (tmp_path / "deployed").exists()


def test_an_unfitted_step_is_refused_by_name(estimators):
    pipeline = Pipeline([("scale", StandardScaler()), ("qnn", estimators[5])])
    with pytest.raises(
        InvalidParameterError, match=r"'scale' \(StandardScaler\) .*it is not fitted"
    ):
        split(pipeline)


def test_raw_rows_given_to_a_model_trained_on_scaled_ones_warn_and_scaled_rows_do_not(
    raw, estimators
):
    X, standardized, _ = raw
    model = estimators[5]
    with pytest.warns(InputRangeWarning, match=r"\d+% of the input values lie beyond 2 times"):
        model.predict(X.to_numpy())
    with pytest.warns(InputRangeWarning):
        model.integer_model_.predict(X.to_numpy()[:1])
    pipeline = make_pipeline(StandardScaler(), model).fit(X, raw[2])
    _, io = split(pipeline)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(standardized)
        io.quantize_input(X)
        for row in range(len(X)):  # one row at a time: outlier rows do not warn either
            model.predict(standardized[row : row + 1])
            io.quantize_input(X[row : row + 1])


# ---------------------------------------------------------------------- encrypted
@pytest.fixture(scope="module")
def cancer(tmp_path_factory):
    """Issue #31's deployment: a StandardScaler and a tiny classifier (string labels) in a
    Pipeline; the estimator's own artifact (compiled from scaled rows) and the pipeline's
    (``deploy.compile`` with raw rows, ``deploy.save_fhe``)."""
    X, y = load_breast_cancer(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), QNNClassifier(**TINY)).fit(X[:400], LABELS[y[:400]])
    rows = X[400:404]
    root = tmp_path_factory.mktemp("cancer")
    pipeline[-1].compile(pipeline[:-1].transform(X[:400]))
    alone = pipeline[-1].save_fhe(root / "estimator")
    deploy.compile(pipeline, X[:400])
    whole = deploy.save_fhe(pipeline, root / "pipeline")
    return pipeline, rows, alone, whole


@functools.cache
def keyed_client(directory):
    client = FHEClient(directory / "client")
    client.keygen(seed=1)
    return client


def run_encrypted(directory, X):
    client = keyed_client(directory)
    ciphertexts = client.encrypt(X)
    with FHEServer(directory / "server") as server:
        keys = server.load_evaluation_keys(client.evaluation_keys())
        results = [server.run(ciphertext, keys) for ciphertext in ciphertexts]
    return client, results


@pytest.mark.slow
def test_the_deployed_pipeline_predicts_raw_rows_as_the_pipeline_does(cancer):
    pipeline, rows, _, whole = cancer
    expected = pipeline.predict(rows)
    assert len(set(expected)) == 2  # the rows do not all get one label
    scaled = pipeline[:-1].transform(rows)
    np.testing.assert_array_equal(pipeline[-1].predict(scaled, fhe="simulate"), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # raw rows through the pipeline's artifact: no warning
        client, results = run_encrypted(whole, rows)
    np.testing.assert_array_equal(client.predict(results), expected)
    assert client.predict(results).dtype == expected.dtype == object


@pytest.mark.slow
def test_raw_rows_encrypted_for_the_estimators_own_artifact_warn(cancer):
    pipeline, rows, alone, _ = cancer
    with pytest.warns(InputRangeWarning, match="deploy.save_fhe"):
        run_encrypted(alone, rows)
    with pytest.warns(InputRangeWarning):
        pipeline[-1].predict(rows, fhe="simulate")


@pytest.mark.slow
def test_the_client_returns_labels_of_the_estimators_dtype(cancer):
    pipeline, rows, alone, _ = cancer
    scaled = pipeline[:-1].transform(rows)
    client, results = run_encrypted(alone, scaled)
    expected = pipeline[-1].predict(scaled)
    assert expected.dtype == object
    np.testing.assert_array_equal(client.predict(results), expected)
    assert client.predict(results).dtype == object


@pytest.mark.slow
def test_a_version_3_client_artifact_still_loads(cancer, tmp_path):
    _, _, alone, _ = cancer
    metadata = json.loads((alone / "client" / "client.json").read_text())
    assert metadata["format_version"] == FHE_CLIENT.version == 4
    del metadata["input"]["n_columns"], metadata["input"]["columns"]
    del metadata["output"]["classes_dtype"], metadata["sha256"]
    directory = tmp_path / "client"
    directory.mkdir()
    (directory / "client.specs.json").write_bytes(
        (alone / "client" / "client.specs.json").read_bytes()
    )
    _write_json(directory / "client.json", {**metadata, "format_version": 3})
    old, new = ClientArtifact.load(directory).io, ClientArtifact.load(alone / "client").io
    assert old.head.classes.dtype.kind == "U"  # version 3 does not say the labels' dtype
    np.testing.assert_array_equal(old.head.classes, new.head.classes)
    assert io_to_json(old)["input"] == io_to_json(new)["input"]
