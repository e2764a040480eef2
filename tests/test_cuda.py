"""Training on a CUDA GPU (``device="cuda"``) gives the same guarantees as on the CPU.

Skipped where torch sees no GPU (CI); run on a GPU machine with ``pytest tests/test_cuda.py``.
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import make_regression
from skorch.callbacks import EarlyStopping
from skorch.dataset import ValidSplit

from concrete_qnn import QNNClassifier, QNNRegressor, load

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FAST = {"max_epochs": 15, "random_state": 0}


def on_gpu(model) -> bool:
    tensors = [*model.module_.parameters(), *model.module_.buffers()]
    return all(tensor.is_cuda for tensor in tensors)


@pytest.mark.parametrize("rule", ["fan_in", "l1_budget", "a2q"])
def test_a_gpu_fit_is_one_certified_integer_model(iris, rule, tmp_path, check_one_fitted_model):
    X, y = iris
    model = QNNClassifier(**FAST, module__accumulator_rule=rule, device="cuda").fit(X, y)
    assert on_gpu(model)
    check_one_fitted_model(model, X)
    assert model.accumulator_certificate(X).holds
    model.save(tmp_path / "model.npz")
    np.testing.assert_array_equal(load(tmp_path / "model.npz").predict(X), model.predict(X))
    # the same training as on the CPU, up to the order of float sums
    on_cpu = QNNClassifier(**FAST, module__accumulator_rule=rule).fit(X, y)
    assert abs(model.score(X, y) - on_cpu.score(X, y)) <= 0.05
    assert model.score(X, y) > 0.8


def test_a_pickled_gpu_fit_predicts_the_same(iris):
    X, y = iris
    model = QNNClassifier(**FAST, device="cuda").fit(X, y)
    copy = pickle.loads(pickle.dumps(model))
    assert on_gpu(copy)
    np.testing.assert_array_equal(copy.predict(X), model.predict(X))


def test_partial_fit_and_prune_stay_on_the_gpu(iris, check_one_fitted_model):
    X, y = iris
    model = QNNClassifier(**FAST, device="cuda").fit(X, y)
    model.partial_fit(X, y)
    assert on_gpu(model)
    check_one_fitted_model(model, X)
    pruned = model.prune(X, y, 0.5)
    assert on_gpu(pruned)
    check_one_fitted_model(pruned, X)
    assert pruned.score(X, y) > 0.8


@pytest.mark.filterwarnings("ignore:make_pruning_permanent repaired")
def test_gpu_regression_with_sample_weight_and_early_stopping(check_one_fitted_model):
    X, y = make_regression(n_samples=300, n_features=6, noise=5.0, random_state=0)
    X, y = X.astype(np.float32), (y - y.mean()) / y.std()
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    stopper = EarlyStopping(patience=3, load_best=True)
    model = QNNRegressor(**FAST, device="cuda", train_split=ValidSplit(5), callbacks=[stopper]).fit(
        X, y, sample_weight=weights
    )
    assert on_gpu(model)
    check_one_fitted_model(model, X)
    assert model.score(X, y) > 0.5
