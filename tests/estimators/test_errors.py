"""Errors by kind (``concrete_qnn.exceptions``): each is also the built-in error raised before."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from concrete_qnn import QNNClassifier
from concrete_qnn.exceptions import (
    AccumulatorBoundError,
    InvalidParameterError,
    NotCompiledError,
    QNNError,
)


@pytest.fixture(scope="module")
def fitted(iris):
    X, y = iris
    return QNNClassifier(max_epochs=2, random_state=0).fit(X, y)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"progress_bar": 1}, "progress_bar must be True or False, got 1"),
        ({"random_state": 1.5}, "random_state must be None or an integer, got 1.5"),
        ({"max_epochs": 0}, 'max_epochs must be "auto" or an integer >= 1, got 0'),
        ({"batch_size": 0}, 'batch_size must be "auto", an integer >= 1, or -1'),
        (
            {"module__n_accum_bits": 20, "rounding_threshold_bits": None},
            r"a table would read 20 bits of its accumulator \(2\^20 entries per neuron\)",
        ),
        ({"module__no_such_parameter": 1}, "invalid module__ parameter"),
        ({"callbacks__accumulator_pruning__x": 1}, "accumulator_pruning__x cannot be set"),
        ({"criterion": lambda: None}, "sample_weight needs per-row losses"),
    ],
)
def test_hyperparameters_refused_by_a_training_call(iris, params, message):
    X, y = iris
    with pytest.raises(InvalidParameterError, match=message) as caught:
        QNNClassifier(**params).fit(X, y, sample_weight=np.linspace(1, 2, len(y)))
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, QNNError)


def test_fit_parameters_that_train_split_does_not_take(iris):
    X, y = iris
    with pytest.raises(InvalidParameterError, match=r"fit parameter\(s\) \['groups'\]"):
        QNNClassifier().fit(X, y, groups=y)


@pytest.mark.parametrize(
    "params",
    [{"module__input_dim": 3}, {"module": None}, {"compile": True}],
)
def test_parameters_refused_by_init_and_set_params(params):
    with pytest.raises(InvalidParameterError):
        QNNClassifier(**params)
    with pytest.raises(InvalidParameterError):
        QNNClassifier().set_params(**params)


def test_prune_refuses_a_fraction_outside_the_unit_interval(iris, fitted):
    X, y = iris
    with pytest.raises(InvalidParameterError, match=r"must be a number in \[0, 1\), got 1.5"):
        fitted.prune(X, y, 1.5)


def test_encrypted_operations_before_compile(iris, fitted, tmp_path):
    X, _ = iris
    message = r"QNNClassifier is not compiled for FHE: call compile\(X\) after fit"
    with pytest.raises(NotCompiledError, match=message) as caught:
        fitted.predict(X, fhe="simulate")
    assert isinstance(caught.value, RuntimeError)
    with pytest.raises(NotCompiledError, match=message):
        fitted.save_fhe(tmp_path / "artifacts")


@pytest.mark.slow
def test_load_params_that_break_the_bound(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    settings = {"module__weight_scaling": "budget_mse", "max_epochs": 3, "random_state": 0}
    saved = QNNClassifier(**settings, module__n_accum_bits=8).fit(X, y)
    saved.save_params(f_params=tmp_path / "p.pt")
    model = QNNClassifier(**settings, module__n_accum_bits=6).fit(X, y)
    expected = model.predict_proba(X)
    with pytest.raises(AccumulatorBoundError, match="nothing was loaded, the fitted model is kept"):
        model.load_params(f_params=tmp_path / "p.pt")
    np.testing.assert_array_equal(model.predict_proba(X), expected)
