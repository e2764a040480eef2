"""The default callbacks: accumulator pruning last, the cosine learning rate, one progress bar."""

import itertools

import numpy as np
import pytest
from skorch.callbacks import ProgressBar

from concrete_qnn import QNNClassifier
from concrete_qnn.training import AccumulatorPruning, auto_batch_size, auto_learning_rate_factor

FAST = {"max_epochs": 15, "random_state": 0}


def test_pruning_is_a_default_callback_that_runs_last(iris_classifier):
    names = [name for name, _ in iris_classifier.callbacks_]
    assert names[-1] == "accumulator_pruning"
    assert isinstance(dict(iris_classifier.callbacks_)["accumulator_pruning"], AccumulatorPruning)
    assert not iris_classifier.module_.pruning_enabled


def test_learning_rate_follows_a_cosine_to_zero(iris_classifier):
    names = [name for name, _ in iris_classifier.callbacks_]
    assert "lr_schedule" in names and names[-1] == "accumulator_pruning"
    lrs = iris_classifier.history[:, "lr"]
    assert lrs[0] == pytest.approx(iris_classifier.lr)
    assert all(a > b for a, b in itertools.pairwise(lrs))
    assert lrs[-1] == pytest.approx(iris_classifier.lr * (1 + np.cos(np.pi * 14 / 15)) / 2)


@pytest.mark.parametrize(
    ("params", "first_draw"),
    [
        ({"progress_bar": True}, "0/5"),
        ({"callbacks": [ProgressBar()]}, "0/5"),  # skorch's default: total from the batch size
        ({"callbacks": [ProgressBar(batches_per_epoch="count")]}, "0it"),  # total after epoch 1
    ],
    ids=["progress_bar", "skorch_auto", "skorch_count"],
)
def test_progress_bar_is_one_parameter_away(iris, capsys, params, first_draw):
    """With ``batch_size="auto"`` (150 rows: 30-row batches, 5 an epoch) skorch's own
    ``ProgressBar`` gets the batch size in use; it used to divide by "auto"."""
    model = QNNClassifier(**FAST, **params).fit(*iris)
    bars = capsys.readouterr().err
    assert "it/s" in bars or "s/it" in bars
    assert model.batch_size == "auto" and model.batch_size_ == 30
    assert "iterator_train__batch_size" not in model.get_params()
    assert first_draw in bars.strip("\r").split("\r")[0]


@pytest.mark.slow
def test_progress_bar_true_beside_a_users_progress_bar_draws_one_bar(iris, capsys):
    """``callbacks=[ProgressBar()]`` replaces the bar of ``progress_bar=True`` (it used to
    draw two, each epoch twice)."""
    model = QNNClassifier(**FAST, progress_bar=True, callbacks=[ProgressBar()]).fit(*iris)
    bars = [cb for _, cb in model.callbacks_ if isinstance(cb, ProgressBar)]
    assert len(bars) == 1
    assert capsys.readouterr().err.count("0/5") == FAST["max_epochs"]
    alone = QNNClassifier(**FAST, progress_bar=True).fit(*iris)
    assert sum(isinstance(cb, ProgressBar) for _, cb in alone.callbacks_) == 1


@pytest.mark.slow
def test_large_data_starts_the_cosine_schedule_at_the_scaled_learning_rate():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12_000, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = QNNClassifier(max_epochs=2, random_state=0).fit(X, y)
    assert model.batch_size_ == auto_batch_size(12_000) == 84
    factor = auto_learning_rate_factor(84)
    assert model.learning_rate_factor_ == factor == pytest.approx((84 / 64) ** 0.5)
    assert model.history[:, "lr"] == pytest.approx([model.lr * factor, model.lr * factor / 2])
    assert model.history[-1, "train_batch_count"] == 143
