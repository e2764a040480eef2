"""Sample weights: a weighted loss on both estimators, routed through scikit-learn."""

import pickle

import numpy as np
import pytest
import sklearn
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_classification, make_regression
from sklearn.metrics import recall_score
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.dataset import ValidSplit

from concrete_qnn import QNNClassifier, QNNRegressor

# The network these tests' figures were measured on (the estimators' defaults before the
# L1 budget and the 64-neuron minimum).
FAST = {
    "max_epochs": 4,
    "random_state": 0,
    "module__n_hidden_neurons_multiplier": 2,
    "module__n_hidden_neurons_min": 0,
    "module__accumulator_rule": "fan_in",
}


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=120, n_features=4, noise=5.0, random_state=0)
    return StandardScaler().fit_transform(X), 100.0 + y


def snapshot(model, X):
    """What a refused call must leave unchanged."""
    return (
        sorted(vars(model)),
        {name: value.cpu().numpy().tobytes() for name, value in model.module_.state_dict().items()},
        len(model.history),
        model.predict(X).tobytes(),
    )


@pytest.mark.parametrize("estimator", [QNNClassifier, QNNRegressor])
def test_fit_takes_sample_weight(estimator, iris, regression, check_one_fitted_model):
    """The original failure: skorch passed sample_weight to the module's forward."""
    X, y = iris if estimator is QNNClassifier else regression
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    model = estimator(**FAST).fit(X, y, sample_weight=weight)
    check_one_fitted_model(model, X)
    unweighted = estimator(**FAST).fit(X, y)
    outputs = [fit.integer_model_.decision_outputs(X) for fit in (model, unweighted)]
    assert not np.array_equal(*outputs)


@pytest.mark.slow
@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.data(),
    estimator=st.sampled_from([QNNClassifier, QNNRegressor]),
    split=st.booleans(),
)
def test_rows_of_weight_zero_have_no_influence(
    data, estimator, split, iris, regression, same_integer_model
):
    """Rows of weight 0, anywhere and with any values, give bit for bit the model fitted
    without them. Same batching requires the same rows in the same order, the same
    batch size (``batch_size="auto"`` counts the rows that train) and the same shuffling
    seed; with a validation split, the same validation rows."""
    X, y = iris if estimator is QNNClassifier else regression
    n_extra = data.draw(st.integers(1, 40), label="n_extra")
    positions = np.sort(
        data.draw(st.lists(st.integers(0, len(X)), min_size=n_extra, max_size=n_extra))
    )
    rng = np.random.default_rng(n_extra)
    X_extra = rng.normal(0, 5, (n_extra, X.shape[1]))
    y_extra = rng.choice(y, n_extra) if estimator is QNNClassifier else rng.normal(0, 1e6, n_extra)
    weight = rng.uniform(0.5, 3.0, len(X))
    X_all = np.insert(X, positions, X_extra, axis=0)
    y_all = np.insert(y, positions, y_extra)
    w_all = np.insert(weight, positions, 0.0)
    params = {**FAST, "max_epochs": 2}
    if split:
        params["train_split"] = ValidSplit(4, stratified=estimator is QNNClassifier)
    with_zeros = estimator(**params).fit(X_all, y_all, sample_weight=w_all)
    without = estimator(**params).fit(X, y, sample_weight=weight)
    assert with_zeros.batch_size_ == without.batch_size_
    assert same_integer_model(with_zeros, without)
    np.testing.assert_array_equal(with_zeros.predict(X), without.predict(X))


def test_equal_weights_are_no_weights(iris, same_integer_model):
    X, y = iris
    plain = QNNClassifier(**FAST).fit(X, y)
    assert same_integer_model(
        QNNClassifier(**FAST).fit(X, y, sample_weight=np.full(len(X), 3.0)), plain
    )
    assert same_integer_model(QNNClassifier(**FAST).fit(X, y, sample_weight=0.5), plain)


def test_minority_recall_rises_with_its_weight():
    """15% minority: weighting it 1, 3, 9 trades majority recall for minority recall
    (measured with the fixed ReLU lookups: minority 0.156, 0.875, 0.969; majority 0.988,
    0.863, 0.631)."""
    X, y = make_classification(
        n_samples=200, n_features=6, weights=[0.85, 0.15], class_sep=0.8, random_state=0
    )
    X = StandardScaler().fit_transform(X)
    minority, majority = [], []
    for minority_weight in (1.0, 3.0, 9.0):
        weight = np.where(y == 1, minority_weight, 1.0)
        model = QNNClassifier(
            **{**FAST, "max_epochs": 8, "lr": 0.01, "module__learned_lookups": False}
        )
        predictions = model.fit(X, y, sample_weight=weight).predict(X)
        minority.append(recall_score(y, predictions))
        majority.append(recall_score(y, predictions, pos_label=0))
    assert minority[0] < minority[1] < minority[2] and minority[2] - minority[0] > 0.5
    assert majority[0] > majority[2]


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        (np.ones(7), r"sample_weight.shape == \(7,\), expected \(150,\)"),
        (np.ones((150, 2)), "Sample weights must be 1D"),
        (-np.ones(150), "Negative values in data passed to `sample_weight`"),
        (np.r_[np.nan, np.ones(149)], "Input sample_weight contains NaN"),
        (np.r_[np.inf, np.ones(149)], "Input sample_weight contains infinity"),
        (np.nan, "sample_weight contains NaN or infinity"),
        (np.zeros(150), "Sample weights must contain at least one non-zero number"),
    ],
)
def test_bad_weights_are_refused_before_any_state_changes(iris, weight, message):
    X, y = iris
    fitted = QNNClassifier(**FAST).fit(X, y)
    before = snapshot(fitted, X)
    for method in (fitted.fit, fitted.partial_fit):
        with pytest.raises(ValueError, match=message):
            method(X, y, sample_weight=weight)
        assert snapshot(fitted, X) == before
    with pytest.raises(ValueError, match=message):
        fitted.prune(X, y, 0.5, sample_weight=weight)
    assert snapshot(fitted, X) == before
    unfitted = QNNClassifier(**FAST)
    with pytest.raises(ValueError, match=message):
        unfitted.fit(X, y, sample_weight=weight)
    assert not hasattr(unfitted, "n_features_in_") and not unfitted.initialized_


def test_weights_that_leave_one_class_are_refused(iris):
    X, y = iris
    with pytest.raises(ValueError, match="at least 2 classes"):
        QNNClassifier(**FAST).fit(X, y, sample_weight=(y == 0).astype(float))


def test_a_criterion_without_per_row_losses_is_refused(iris):
    class MeanOnly(torch.nn.Module):
        def forward(self, outputs, targets):
            return torch.nn.functional.cross_entropy(outputs, targets)

    X, y = iris
    model = QNNClassifier(criterion=MeanOnly, **FAST)
    model.fit(X, y)  # fine without weights
    with pytest.raises(ValueError, match="has no 'reduction' argument"):
        model.fit(X, y, sample_weight=np.r_[np.ones(75), 2 * np.ones(75)])


def test_partial_fit_and_prune_take_weights_as_fit_does(iris, same_integer_model):
    X, y = iris
    keep = np.arange(len(X)) % 3 > 0
    weight = np.where(keep, 1.0 + (np.arange(len(X)) % 2), 0.0)
    base = QNNClassifier(**FAST).fit(X, y)
    for method, args in (("partial_fit", ()), ("prune", (0.5,))):
        weighted, subset = pickle.loads(pickle.dumps(base)), pickle.loads(pickle.dumps(base))
        got = getattr(weighted, method)(X, y, *args, sample_weight=weight)
        expected = getattr(subset, method)(X[keep], y[keep], *args, sample_weight=weight[keep])
        assert same_integer_model(got, expected)


def test_the_regressor_weights_its_loss_and_its_target_statistics(regression):
    X, y = regression
    weight = np.where(np.arange(len(X)) < 60, 3.0, 1.0)
    model = QNNRegressor(**FAST).fit(X, y, sample_weight=weight)
    np.testing.assert_allclose(model.target_mean_, [np.average(y, weights=weight)])
    spread = np.sqrt(np.average((y - model.target_mean_) ** 2, weights=weight))
    np.testing.assert_allclose(model.target_std_, [spread])


# ---------------------------------------------------------------------- routing
def weighted_fold_models(X, y, weight, folds):
    return [
        QNNClassifier(**FAST).fit(X[train], y[train], sample_weight=weight[train])
        for train, _ in folds.split(X, y)
    ]


def test_pipeline_routes_weights_by_step_name(iris, same_integer_model):
    X, y = iris
    weight = np.where(y == 2, 3.0, 1.0)
    pipeline = make_pipeline(StandardScaler(), QNNClassifier(**FAST))
    pipeline.fit(X, y, qnnclassifier__sample_weight=weight)
    direct = QNNClassifier(**FAST).fit(StandardScaler().fit_transform(X), y, sample_weight=weight)
    assert same_integer_model(pipeline[-1], direct)


def test_grid_search_passes_weights_to_every_fit(iris, same_integer_model):
    X, y = iris
    weight = np.where(y == 2, 3.0, 1.0)
    folds = KFold(2, shuffle=True, random_state=0)
    search = GridSearchCV(QNNClassifier(**FAST), {"lr": [0.002]}, cv=folds)
    search.fit(X, y, sample_weight=weight)
    assert same_integer_model(
        search.best_estimator_, QNNClassifier(**FAST).fit(X, y, sample_weight=weight)
    )


@pytest.mark.slow
def test_metadata_routing_through_pipeline_grid_search_and_cross_validate(iris, same_integer_model):
    X, y = iris
    weight = np.where(y == 2, 3.0, 1.0)
    folds = KFold(2, shuffle=True, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        estimator = QNNClassifier(**FAST).set_fit_request(sample_weight=True)
        estimator.set_score_request(sample_weight=True)
        scaler = StandardScaler().set_fit_request(sample_weight=False)
        pipeline = make_pipeline(scaler, estimator).fit(X, y, sample_weight=weight)
        direct = QNNClassifier(**FAST).fit(
            StandardScaler().fit_transform(X), y, sample_weight=weight
        )
        assert same_integer_model(pipeline[-1], direct)

        search = GridSearchCV(estimator, {"lr": [0.002]}, cv=folds).fit(X, y, sample_weight=weight)
        assert same_integer_model(
            search.best_estimator_, QNNClassifier(**FAST).fit(X, y, sample_weight=weight)
        )

        results = cross_validate(
            estimator, X, y, cv=folds, params={"sample_weight": weight}, return_estimator=True
        )
    for got, expected in zip(
        results["estimator"], weighted_fold_models(X, y, weight, folds), strict=True
    ):
        assert same_integer_model(got, expected)
