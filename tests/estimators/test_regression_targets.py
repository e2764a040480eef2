"""Regression targets in their own units: the regressor standardizes each target column
itself and the integer model, in memory and in its file, predicts in the target's units."""

import json
import zipfile

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from concrete_qnn import QNNRegressor, load
from concrete_qnn.integer.formats import content_sha256

# Measured on this split: 0.1855 at 10 epochs, 0.3676 at the default 60, identical to five
# decimals for standardized, raw, 1e-3 and 1e6 targets (main gave -4.18 on raw targets).
EPOCHS = 10


@pytest.fixture(scope="module")
def diabetes():
    """The fixed split of the issue: standardized X, raw y (25..346)."""
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def fitted_r2(diabetes, transform):
    """Held-out R^2 of a fit on ``transform(y)``, scored in the transformed units."""
    X_train, X_test, y_train, y_test = diabetes
    model = QNNRegressor(random_state=0, max_epochs=EPOCHS).fit(X_train, transform(y_train))
    return r2_score(transform(y_test), model.predict(X_test)), model


@pytest.fixture(scope="module")
def standardized_figure(diabetes):
    mean, std = diabetes[2].mean(), diabetes[2].std()
    return fitted_r2(diabetes, lambda y: (y - mean) / std)[0]


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e6])
def test_raw_targets_score_as_standardized_ones(diabetes, standardized_figure, scale):
    """The original failure: raw y gave R^2 -4.19, predictions stuck in 3.7..12.2."""
    r2, model = fitted_r2(diabetes, lambda y: scale * y)
    assert standardized_figure > 0.15
    assert abs(r2 - standardized_figure) <= 0.01
    predictions = model.predict(diabetes[1])
    assert 50 * scale < predictions.mean() < 250 * scale
    np.testing.assert_allclose(model.target_mean_, [scale * diabetes[2].mean()])
    np.testing.assert_allclose(model.target_std_, [scale * diabetes[2].std()])


def two_targets(y):
    """Diabetes progression and a second target on a scale 10^6 times smaller."""
    return np.column_stack([y, 1e-6 * (y - 150.0) ** 2])


def test_two_targets_of_very_different_scales(diabetes, tmp_path):
    _, X_test, y_train, _ = diabetes
    mean, std = two_targets(y_train).mean(axis=0), two_targets(y_train).std(axis=0)
    standardized, _ = fitted_r2(diabetes, lambda y: (two_targets(y) - mean) / std)
    raw, model = fitted_r2(diabetes, two_targets)
    assert standardized > 0.05
    assert abs(raw - standardized) <= 0.01
    assert model.target_mean_.shape == model.target_std_.shape == (2,)
    # the file keeps one mean and standard deviation per target
    model.save(tmp_path / "model.npz")
    loaded = load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.predict(X_test), model.predict(X_test))
    with zipfile.ZipFile(tmp_path / "model.npz") as archive:
        metadata = json.loads(np.load(archive.open("metadata.npy")).tobytes())
    np.testing.assert_allclose(metadata["target_mean"], model.target_mean_)
    np.testing.assert_allclose(metadata["target_std"], model.target_std_)


def test_a_constant_target_column_predicts_its_constant(diabetes):
    X_train, X_test, y_train, _ = diabetes
    y = np.column_stack([y_train, np.full(len(y_train), 7.0)])
    model = QNNRegressor(random_state=0, max_epochs=5).fit(X_train, y)
    np.testing.assert_allclose(model.target_std_, [y_train.std(), 1.0])
    predictions = model.predict(X_test)
    assert np.all(np.isfinite(predictions))
    assert np.abs(predictions[:, 1] - 7.0).max() < 0.25


def test_files_with_one_target_mean_still_load(diabetes, tmp_path):
    """Files written before per-target statistics hold one number for every target."""
    X_train, X_test, y_train, _ = diabetes
    model = QNNRegressor(random_state=0, max_epochs=2).fit(X_train, y_train)
    model.save(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz") as archive:
        arrays = dict(archive)
    metadata = json.loads(arrays["metadata"].tobytes())
    metadata["target_mean"], metadata["target_std"] = 100.0, 2.0
    del arrays["metadata"]
    metadata["sha256"] = content_sha256(metadata, arrays)  # written so, not edited
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    np.savez_compressed(tmp_path / "old.npz", **arrays)
    old = load(tmp_path / "old.npz")
    assert old.head.target_mean == 100.0 and old.head.target_std == 2.0
    outputs = model.integer_model_.decision_outputs(X_test).ravel()
    np.testing.assert_allclose(old.predict(X_test), outputs * 2.0 + 100.0)
