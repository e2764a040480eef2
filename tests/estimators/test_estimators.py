"""QNNClassifier and QNNRegressor behave like scikit-learn estimators."""

import copy
import pickle
import re
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from concrete_qnn import QNNClassifier, QNNRegressor, SparseQuantNeuralNetwork, pruning

FAST = {"max_epochs": 15, "random_state": 0}


@pytest.fixture
def fitted(iris_classifier):
    return iris_classifier


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=120, n_features=5, n_targets=2, noise=0.1, random_state=0)
    return StandardScaler().fit_transform(X), StandardScaler().fit_transform(y)


# ---------------------------------------------------------------------- parameters
@pytest.mark.parametrize("estimator_class", [QNNClassifier, QNNRegressor])
def test_module_parameters_are_visible_with_the_module_defaults(estimator_class):
    """Every module parameter is an estimator parameter with the module's default, except
    the six the estimators choose from the benchmark suites (the module keeps the seed's)."""
    params = estimator_class().get_params()
    net = SparseQuantNeuralNetwork(input_dim=1, n_layers=3, n_outputs=1)
    estimator_defaults = {
        "accumulator_rule": "l1_budget",
        "n_hidden_neurons_min": 64,
        "n_hidden_neurons_multiplier": 2,
        "n_input_bits": "auto",
        "weight_scaling": "auto",
        "learned_lookups": "auto",
    }
    for name, default in net.get_config().items():
        if name in ("input_dim", "n_outputs"):
            assert f"module__{name}" not in params
        else:
            assert params[f"module__{name}"] == estimator_defaults.get(name, default), name
    assert params["module__n_layers"] == 3
    assert "module" not in params


@pytest.mark.parametrize("name", ["module", "module__input_dim", "module__n_outputs"])
def test_data_parameters_cannot_be_passed(name):
    with pytest.raises(ValueError, match=f"QNNClassifier sets {name} itself"):
        QNNClassifier(**{name: 3})


@pytest.mark.slow
def test_grid_search_over_bit_widths_with_nothing_else_set(iris):
    X, y = iris
    search = GridSearchCV(
        QNNClassifier(), {"module__n_w_bits": [2, 3], "module__n_accum_bits": [6, 8]}, cv=2
    )
    search.fit(X, y)
    assert set(search.best_params_) == {"module__n_w_bits", "module__n_accum_bits"}
    assert search.best_score_ > 0.6
    best = search.best_estimator_.module_
    assert best.n_w_bits == search.best_params_["module__n_w_bits"]
    assert search.best_estimator_.certificate_.max_bits <= best.n_accum_bits


@pytest.mark.slow
def test_grid_search_in_two_processes_matches_one(iris):
    X, y = iris
    grid = {"module__n_w_bits": [2, 3]}
    scores = [
        GridSearchCV(QNNClassifier(**FAST), grid, cv=2, n_jobs=n_jobs)
        .fit(X, y)
        .cv_results_["mean_test_score"]
        for n_jobs in (1, 2)
    ]
    np.testing.assert_array_equal(scores[0], scores[1])


# ---------------------------------------------------------------------- pruning
def test_fit_exposes_a_certificate_that_holds(fitted):
    certificate = fitted.certificate_
    assert certificate.holds and certificate.max_bits <= 8
    assert [row["layer"] for row in certificate.rows()] == ["fc0", "fc1", "fc2"]
    # The default L1 budget keeps more inputs per neuron than the fan-in cap would (7).
    assert fitted.module_.accumulator_rule == "l1_budget"
    assert max(layer.fan_in.max() for layer in certificate.layers) > 7


def test_fit_fails_loudly_when_the_bound_cannot_hold(iris, monkeypatch):
    def no_repair(net, layer, reach, repairs):
        with torch.no_grad():
            net.fc0.bias.fill_(1e4)

    monkeypatch.setattr(pruning, "repair_layer", no_repair)
    with pytest.raises(RuntimeError, match="accumulator certificate violated"):
        QNNClassifier(**FAST).fit(*iris)


@pytest.mark.parametrize("n_accum_bits", [6, 8])
def test_a2q_rule_fits_certified_without_repairs(iris, n_accum_bits):
    X, y = iris
    model = QNNClassifier(
        module__accumulator_rule="a2q", module__n_accum_bits=n_accum_bits, **FAST
    ).fit(X, y)
    assert model.module_.weight_scaling_used == "budget_mse"  # the rule owns the scales
    assert model.certificate_.holds and model.certificate_.max_bits <= n_accum_bits
    assert model.module_.pruning_repairs == {"weights_dropped": 0, "biases_clamped": 0}
    assert model.score(X, y) > 0.8


@pytest.mark.slow
def test_l1_budget_rule_fits_where_the_fan_in_cap_refuses(iris):
    X, y = iris
    with pytest.raises(ValueError, match="n_accum_bits=5 is too small"):
        QNNClassifier(module__n_accum_bits=5, module__accumulator_rule="fan_in", **FAST).fit(X, y)
    # At 3/3/5 the budget at Brevitas' max-abs scale keeps one or two inputs per neuron;
    # 2-bit codes keep many more.
    model = QNNClassifier(
        module__n_accum_bits=5,
        module__n_w_bits=2,
        module__n_a_bits=2,
        module__accumulator_rule="l1_budget",
        module__weight_scaling="max",
        module__n_hidden_neurons_multiplier=4,  # the width its figure was measured at
        module__n_hidden_neurons_min=0,
        **FAST,
    ).fit(X, y)
    assert model.certificate_.holds and model.certificate_.max_bits <= 5
    assert model.module_.max_active_neurons() == 3  # 2/2/5: the fan-in cap would keep 3
    assert max(layer.fan_in.max() for layer in model.certificate_.layers) > 3
    assert model.score(X, y) > 0.85  # measured 0.933
    model.partial_fit(X, y)
    assert model.certificate_.holds and model.certificate_.max_bits <= 5
    with pytest.raises(
        ValueError, match=r"accumulator_rule must be one of 'fan_in', 'l1_budget', 'a2q'"
    ):
        QNNClassifier(module__accumulator_rule="a3q", **FAST).fit(X, y)


def test_prune_returns_a_smaller_fitted_copy_and_leaves_the_original(iris, fitted):
    X, y = iris
    before = fitted.predict_proba(X)
    widths = fitted.module_.layer_widths()
    pruned = fitted.prune(X, y, 0.5)
    assert pruned is not fitted
    np.testing.assert_array_equal(fitted.predict_proba(X), before)
    assert fitted.module_.layer_widths() == widths == [4, 64, 64, 3]  # n_hidden_neurons_min
    assert pruned.module_.layer_widths() == [4, 32, 32, 3]
    assert pruned.get_params()["module__n_prune_neurons_percentage"] == 0.5
    assert pruned.certificate_.holds
    assert pruned.score(X, y) > 0.7
    with pytest.raises(ValueError, match="already pruned structurally"):
        pruned.prune(X, y, 0.2)


@pytest.mark.parametrize("fraction", [1.0, -0.1, "half"])
def test_prune_refuses_fractions_outside_the_unit_interval(iris, fitted, fraction):
    with pytest.raises(
        ValueError, match=r"n_prune_neurons_percentage must be a number in \[0, 1\)"
    ):
        fitted.prune(*iris, fraction)


def test_prune_needs_a_fitted_model(iris):
    with pytest.raises(NotFittedError):
        QNNClassifier().prune(*iris, 0.5)


def test_partial_fit_continues_from_the_current_weights(iris, fitted):
    model = pickle.loads(pickle.dumps(fitted))
    model.partial_fit(*iris)
    assert len(model.history) == 2 * FAST["max_epochs"]
    assert model.certificate_.holds
    # the optimizer drives the unpickled module's own parameters
    assert not torch.equal(model.module_.fc0.weight, fitted.module_.fc0.weight)
    assert model.history[-1, "train_loss"] < fitted.history[-1, "train_loss"]


# ---------------------------------------------------------------------- classifier
@pytest.mark.parametrize(
    "labels",
    [np.array([10, 11, 12]), np.array(["setosa", "versicolor", "virginica"]), None],
)
def test_labels_of_any_type(iris, labels):
    X, y = iris
    if labels is None:  # binary booleans
        y_labels = y == 0
    else:
        y_labels = labels[y]
    model = QNNClassifier(**FAST).fit(X, y_labels)
    np.testing.assert_array_equal(model.classes_, np.unique(y_labels))
    predictions = model.predict(X)
    assert predictions.dtype == np.asarray(y_labels).dtype
    assert set(predictions) <= set(y_labels)
    assert model.score(X, y_labels) > 0.6
    probabilities = model.predict_proba(X)
    assert probabilities.shape == (len(X), len(model.classes_))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("weight", [[1.0, 2.0, 3.0], np.array([1.0, 2.0, 3.0])])
def test_criterion_weight_as_list_or_array(iris, weight):
    model = QNNClassifier(criterion__weight=weight, **FAST).fit(*iris)
    np.testing.assert_array_equal(model.criterion_.weight.numpy(), [1.0, 2.0, 3.0])


def test_a_single_class_is_refused(iris):
    X, _ = iris
    with pytest.raises(ValueError, match=r"at least 2 classes .* only one class"):
        QNNClassifier(**FAST).fit(X, np.zeros(len(X)))


# ---------------------------------------------------------------------- regressor
@pytest.mark.slow
@pytest.mark.parametrize("ndim", [1, 2])
def test_regressor_keeps_the_target_dimensionality(regression, ndim):
    X, y = regression
    y = y[:, 0] if ndim == 1 else y
    model = QNNRegressor(random_state=0, max_epochs=40).fit(X, y)
    predictions = model.predict(X)
    assert predictions.shape == y.shape and predictions.dtype == np.float64
    assert model.score(X, y) > 0.5
    assert model.certificate_.holds
    assert not hasattr(model, "predict_proba")


# ---------------------------------------------------------------------- inputs
def test_inputs_as_lists_tensors_and_float64(iris, fitted):
    X, y = iris
    expected = fitted.predict(X)
    np.testing.assert_array_equal(fitted.predict(X.tolist()), expected)
    np.testing.assert_array_equal(fitted.predict(torch.tensor(X)), expected)
    np.testing.assert_array_equal(fitted.predict(X.astype(np.float32)), expected)
    model = QNNClassifier(**FAST).fit(torch.tensor(X), torch.tensor(y))
    np.testing.assert_array_equal(model.predict(X), expected)


def test_dataframes_record_and_check_feature_names(iris):
    X, y = iris
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    model = QNNClassifier(**FAST).fit(frame, y)
    np.testing.assert_array_equal(model.feature_names_in_, ["a", "b", "c", "d"])
    assert model.predict(frame).shape == (len(X),)
    with pytest.raises(ValueError, match="feature names should match"):
        model.predict(frame.rename(columns={"a": "z"}))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_are_refused(iris, fitted, bad):
    X, y = iris
    X = X.copy()
    X[3, 1] = bad
    with pytest.raises(ValueError, match=r"Input X contains (NaN|infinity)"):
        QNNClassifier(**FAST).fit(X, y)
    with pytest.raises(ValueError, match=r"Input X contains (NaN|infinity)"):
        fitted.predict(X)


def test_wrong_feature_count_names_both_counts(iris, fitted):
    with pytest.raises(ValueError, match="X has 3 features, but QNNClassifier is expecting 4"):
        fitted.predict(iris[0][:, :3])


def test_empty_data_and_unfitted_models_are_refused(iris):
    X, y = iris
    with pytest.raises(ValueError, match="0 sample"):
        QNNClassifier(**FAST).fit(X[:0], y[:0])
    for method in ("predict", "predict_proba"):
        with pytest.raises(NotFittedError):
            getattr(QNNClassifier(), method)(X)
    with pytest.raises(NotFittedError):
        QNNRegressor().predict(X)
    with pytest.raises(NotFittedError):
        QNNClassifier().certificate_  # noqa: B018


# ---------------------------------------------------------------------- reproducibility
@pytest.mark.slow
def test_random_state_gives_bit_identical_fits(iris):
    X, y = iris
    first = QNNClassifier(**FAST).fit(X, y).predict_proba(X)
    second = QNNClassifier(**FAST).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    other = QNNClassifier(max_epochs=15, random_state=1).fit(X, y).predict_proba(X)
    assert not np.array_equal(first, other)


def test_random_state_does_not_touch_the_global_rng(iris):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    QNNClassifier(**FAST).fit(*iris)
    np.testing.assert_array_equal(torch.rand(3), expected)


@pytest.mark.slow
def test_random_state_gives_bit_identical_fits_across_processes(iris, fitted):
    script = (
        "import numpy as np, sys\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.preprocessing import StandardScaler\n"
        "from concrete_qnn import QNNClassifier\n"
        "X, y = load_iris(return_X_y=True)\n"
        "X = StandardScaler().fit_transform(X)\n"
        "p = QNNClassifier(max_epochs=15, random_state=0).fit(X, y).predict_proba(X)\n"
        "sys.stdout.write(p.tobytes().hex())\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    np.testing.assert_array_equal(
        np.frombuffer(bytes.fromhex(output)).reshape(len(iris[0]), 3),
        fitted.predict_proba(iris[0]),
    )


# ---------------------------------------------------------------------- composition
@pytest.mark.slow
def test_pipeline_clone_and_cross_validation():
    X, y = load_breast_cancer(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), QNNClassifier(**FAST))
    scores = cross_val_score(pipeline, X, y, cv=3)
    assert scores.min() > 0.85
    copy = clone(pipeline)
    assert copy.get_params()["qnnclassifier__max_epochs"] == 15
    assert not hasattr(copy[-1], "module_")


@pytest.mark.parametrize("dumps", ["pickle", "joblib"])
def test_pickle_and_joblib_round_trips_predict_identically(iris, fitted, dumps, tmp_path):
    X, _ = iris
    if dumps == "pickle":
        restored = pickle.loads(pickle.dumps(fitted))
    else:
        joblib.dump(fitted, tmp_path / "model.joblib")
        restored = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    assert restored.certificate_.to_text() == fitted.certificate_.to_text()


def test_pickle_round_trip_of_a_structurally_pruned_model(iris, fitted):
    pruned = fitted.prune(*iris, 0.25)
    restored = pickle.loads(pickle.dumps(pruned))
    assert restored.module_.layer_widths() == pruned.module_.layer_widths() == [4, 48, 48, 3]
    np.testing.assert_array_equal(restored.predict_proba(iris[0]), pruned.predict_proba(iris[0]))


# ---------------------------------------------------------------------- output
@pytest.mark.slow
def test_verbose_zero_is_silent_and_one_prints_the_epoch_table(iris, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        QNNClassifier(**FAST, verbose=0).fit(*iris)
    assert capsys.readouterr().out == ""
    QNNClassifier(**FAST, verbose=1).fit(*iris)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["epoch", "lr", "train_loss"]
    assert len([line for line in lines if line.strip()[:1].isdigit()]) == FAST["max_epochs"]


def test_progress_bar_must_be_a_boolean(iris):
    with pytest.raises(ValueError, match="progress_bar must be True or False, got 'yes'"):
        QNNClassifier(progress_bar="yes", **FAST).fit(*iris)


@pytest.mark.parametrize("size", [0, -2, 2.5, "AUTO", None, True])
def test_invalid_batch_size_is_refused_before_training_and_the_fitted_model_kept(
    iris, fitted, size
):
    model = copy.deepcopy(fitted)
    expected = model.predict(iris[0])
    model.set_params(batch_size=size)
    with pytest.raises(
        ValueError, match=f'batch_size must be "auto", .* got {re.escape(repr(size))}'
    ):
        model.fit(*iris)
    np.testing.assert_array_equal(model.predict(iris[0]), expected)


@pytest.mark.parametrize("epochs", [0, -1, 2.5, True])
def test_max_epochs_below_one_is_refused_and_the_fitted_model_kept(iris, fitted, epochs):
    model = copy.deepcopy(fitted)
    expected = model.predict(iris[0])
    model.set_params(max_epochs=epochs)
    with pytest.raises(
        ValueError, match=f'max_epochs must be "auto" or an integer >= 1, got {epochs!r}'
    ):
        model.fit(*iris)
    np.testing.assert_array_equal(model.predict(iris[0]), expected)


def test_weights_too_fine_for_the_bound_are_refused_and_the_fitted_model_kept(iris):
    """``module__n_w_bits=8`` at the 8-bit bound used to train a constant model whose
    certificate held (first layer fan-in 0)."""
    X, y = iris
    model = QNNClassifier(**FAST).fit(X, y)
    before = model.predict_proba(X)
    with pytest.raises(ValueError, match=r"n_accum_bits=8 is too small for n_w_bits=8"):
        model.set_params(module__n_w_bits=8).fit(X, y)
    np.testing.assert_array_equal(model.predict_proba(X), before)


# ---------------------------------------------------------------------- accuracy, device
@pytest.mark.slow
def test_defaults_train_well_on_standardized_breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), QNNClassifier(random_state=0))
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    assert cross_val_score(model, X, y, cv=folds).mean() >= 0.95


def test_skorch_torch_compile_flag_gives_way_to_the_fhe_compile_method():
    model = QNNClassifier()
    assert "compile" not in model.get_params()
    assert callable(model.compile)
    with pytest.raises(ValueError, match=r"does not take skorch's compile \(torch.compile\)"):
        QNNClassifier(compile=True)


def test_partial_fit_classes_announce_labels_without_changing_parameters(iris):
    X, y = iris
    model = QNNClassifier(**FAST).partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    assert model.get_params()["classes"] is None
    model.partial_fit(X, y)  # the third class arrives later
    assert set(model.predict(X)) <= {0, 1, 2}
