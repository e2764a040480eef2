"""batch_size="auto" and batched loading: one indexing of the arrays per batch."""

import numpy as np
import pytest
from skorch.callbacks import Callback
from skorch.dataset import Dataset, ValidSplit
from torch.utils.data import default_collate

from concrete_qnn import QNNClassifier
from concrete_qnn.training import auto_batch_size, auto_learning_rate_factor

FAST = {"max_epochs": 15, "random_state": 0}
# Fits that count batches: 3 epochs.
FEW = {"max_epochs": 3, "random_state": 0}


def _weights(model) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in model.module_.parameters()]


def test_auto_batch_size_depends_on_the_data_and_leaves_the_parameter(iris_classifier, iris):
    assert iris_classifier.get_params()["batch_size"] == "auto"
    assert iris_classifier.batch_size_ == 30  # 150 rows: about 5 steps an epoch
    assert iris_classifier.learning_rate_factor_ == 1.0
    assert [auto_batch_size(n) for n in (40, 142, 320, 1347)] == [16, 28, 64, 64]
    assert (
        iris_classifier.get_params_for("iterator_train")["batch_size"]
        == iris_classifier.batch_size_
    )
    X, y = iris
    sized = QNNClassifier(batch_size=50, **FAST).fit(X, y)
    assert sized.batch_size_ is None
    assert "batch_size" not in sized.get_params_for("iterator_train")  # skorch uses 50


def test_auto_batch_size_and_learning_rate_are_unchanged_up_to_ten_thousand_rows():
    for n_samples in range(1, 10_001):
        batch_size = auto_batch_size(n_samples)
        assert batch_size == min(64, max(16, n_samples // 5))  # the rule before large data
        assert auto_learning_rate_factor(batch_size) == 1.0


@pytest.mark.parametrize("n_samples", [10_001, 30_000, 100_000, 1_000_000, 10**7, 10**9])
def test_auto_batch_size_bounds_the_steps_of_an_epoch_on_large_data(n_samples):
    batch_size = auto_batch_size(n_samples)
    steps = -(-n_samples // batch_size)
    assert 50 <= steps <= 157
    if n_samples >= 100_000:
        assert steps == 50  # a fit of 60 epochs takes 3,000 steps however large the data
    assert 1.0 <= auto_learning_rate_factor(batch_size) <= 32**0.5
    assert auto_batch_size(n_samples + 1) >= batch_size  # never smaller for more rows


def test_the_batch_size_in_use_is_a_deep_parameter_only_during_fit(iris):
    seen = []

    class Spy(Callback):
        def on_epoch_begin(self, net, **kwargs):
            seen.append(net.get_params()["iterator_train__batch_size"])
            assert net.get_params(deep=False)["batch_size"] == "auto"

    model = QNNClassifier(**FAST, callbacks=[Spy()]).fit(*iris)
    assert seen == [30] * FAST["max_epochs"]
    assert "iterator_train__batch_size" not in model.get_params()
    fixed = QNNClassifier(**FAST, batch_size=50, callbacks=[Spy()])
    with pytest.raises(KeyError):
        fixed.fit(*iris)


def test_batch_size_minus_one_is_skorchs_one_batch_of_every_row(iris):
    model = QNNClassifier(max_epochs=2, random_state=0, batch_size=-1).fit(*iris)
    assert [len(model.history[epoch, "batches"]) for epoch in range(2)] == [1, 1]


def test_each_batch_is_fetched_with_one_indexing(iris, monkeypatch):
    calls = []
    getitem = Dataset.__getitem__
    monkeypatch.setattr(Dataset, "__getitem__", lambda self, i: calls.append(i) or getitem(self, i))
    X, y = iris
    model = QNNClassifier(**FEW).fit(X, y)
    assert model.batch_size_ == 30
    assert len(calls) == 3 * 5  # 3 epochs of 5 batches of 30 rows, one call each
    assert sorted(np.concatenate(calls[:5]).tolist()) == list(range(150))  # a permutation


def test_batched_loading_trains_exactly_as_skorchs_row_by_row_loading(iris):
    X, y = iris
    weights = np.linspace(0.5, 2.0, len(X))
    batched = QNNClassifier(**FEW).fit(X, y, sample_weight=weights)
    # A collate_fn gets skorch's DataLoader, which reads the dataset row by row.
    by_row = QNNClassifier(iterator_train__collate_fn=default_collate, **FEW)
    by_row.fit(X, y, sample_weight=weights)
    for a, b in zip(_weights(batched), _weights(by_row), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(batched.predict(X), by_row.predict(X))


def test_a_validation_split_is_read_in_batches_too(iris, monkeypatch):
    calls = []
    getitem = Dataset.__getitem__
    monkeypatch.setattr(Dataset, "__getitem__", lambda self, i: calls.append(i) or getitem(self, i))
    X, y = iris
    QNNClassifier(train_split=ValidSplit(5, stratified=True), **FEW).fit(X, y)
    # per epoch: 120 training rows in 4 batches of 30, 30 validation rows in 1 batch
    assert [len(i) for i in calls[:5]] == [30, 30, 30, 30, 30]
    assert len(calls) == 3 * 5
