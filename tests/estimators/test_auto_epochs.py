"""``max_epochs="auto"``: 200 epochs where the lookups are learned, else 60."""

import numpy as np
import pytest
from sklearn.base import clone

from concrete_qnn import QNNClassifier, QNNRegressor
from concrete_qnn.estimators.parameters import (
    DEFAULT_MAX_EPOCHS,
    LEARNED_LOOKUPS_MAX_EPOCHS,
    auto_max_epochs,
)
from concrete_qnn.nn.lookups import AUTO_MAX_FEATURES


def _data(n_features, n_rows=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    return X, (X[:, 0] * X[:, 1] > 0).astype(int)


def test_the_rule():
    assert (DEFAULT_MAX_EPOCHS, LEARNED_LOOKUPS_MAX_EPOCHS) == (60, 200)
    assert auto_max_epochs(True) == 200 and auto_max_epochs(False) == 60
    assert QNNClassifier().get_params()["max_epochs"] == "auto"
    assert QNNRegressor().get_params()["max_epochs"] == "auto"


@pytest.mark.parametrize(
    ("n_features", "learned_lookups", "epochs"),
    [
        (2, "auto", 200),  # learned on few features
        (AUTO_MAX_FEATURES + 1, "auto", 60),  # fixed lookups
        (2, False, 60),
        (AUTO_MAX_FEATURES + 1, True, 200),
    ],
)
def test_auto_trains_the_epochs_the_lookups_call_for(n_features, learned_lookups, epochs):
    X, y = _data(n_features)
    model = QNNClassifier(random_state=0, module__learned_lookups=learned_lookups).fit(X, y)
    assert model.module_.config.learned_lookups_used == (epochs == 200)
    assert model.max_epochs_ == epochs == len(model.history)
    assert model.max_epochs == "auto" and clone(model).max_epochs == "auto"
    # the cosine schedule spans the resolved epochs: it ends near 0, not a third of the way
    assert model.history[-1, "lr"] < 1e-3 * model.history[0, "lr"]


def test_an_integer_is_kept_and_partial_fit_adds_the_resolved_epochs():
    X, y = _data(2)
    model = QNNClassifier(random_state=0, max_epochs=3).fit(X, y)
    assert model.max_epochs_ == len(model.history) == 3
    model.set_params(max_epochs="auto").partial_fit(X, y)
    assert model.max_epochs_ == 200 and len(model.history) == 203


def test_a_progress_bar_counts_the_resolved_epochs(capsys):
    X, y = _data(2, n_rows=20)
    QNNClassifier(random_state=0, progress_bar=True).fit(X, y)
    captured = capsys.readouterr()
    assert "epoch 200/200" in captured.err + captured.out
