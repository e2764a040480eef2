"""skorch's own training options and built-in callbacks work on both estimators, and the
model that fit returns is still pruned, certified and integer."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_regression
from sklearn.exceptions import NotFittedError
from sklearn.metrics import get_scorer
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import (
    Checkpoint,
    EarlyStopping,
    EpochScoring,
    GradientNormClipping,
    LoadInitState,
    LRScheduler,
)
from skorch.dataset import ValidSplit

from concrete_qnn import QNNClassifier, QNNRegressor

EPOCHS = 6
# Lookups read the whole accumulator here, so the returned integer model computes exactly
# the network skorch scored during training (rounding is tested in test_rounding.py).
SMALL = {
    "max_epochs": EPOCHS,
    "random_state": 0,
    "lr": 0.02,
    "module__n_hidden_neurons_multiplier": 2,
    "rounding_threshold_bits": None,
    "module__n_hidden_neurons_min": 0,
}


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=150, n_features=4, noise=5.0, random_state=0)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(params=["classifier", "regressor"])
def task(request, iris, regression):
    """(estimator class, X, y, name of the score skorch computes, a ValidSplit for it)."""
    if request.param == "classifier":
        return QNNClassifier, *iris, "accuracy", ValidSplit(5, stratified=True)
    return QNNRegressor, *regression, "r2", ValidSplit(5)


def score_on_valid_rows(model, X, y, score):
    """The returned model's score on the rows ValidSplit(5) held out (its first fold)."""
    folds = StratifiedKFold(5) if isinstance(model, QNNClassifier) else KFold(5)
    valid = next(folds.split(X, y))[1]
    return get_scorer(score)(model, X[valid], y[valid])


def assert_last_valid_score_is_the_models(model, X, y, score, key):
    """skorch scored the network being trained: at the last epoch, that is the network
    fit returns (pruning folds the masks in; the integer model agrees with it)."""
    assert model.history[-1, key] == pytest.approx(
        score_on_valid_rows(model, X, y, score), abs=0.02
    )


def test_validation_split_scores_the_network_being_trained(task, check_one_fitted_model):
    """The original failure: skorch's valid_acc called predict before integer_model_."""
    estimator, X, y, score, split = task
    # the classifier's valid_acc is skorch's default; the regressor gets a valid R^2
    key, callbacks = "valid_acc", []
    if estimator is QNNRegressor:
        key, callbacks = "valid_r2", [EpochScoring("r2", name="valid_r2")]
    model = estimator(train_split=split, callbacks=callbacks, **SMALL).fit(X, y)
    history = model.history
    assert len(history) == EPOCHS
    assert sum(history[-1, "batches", :, "valid_batch_size"]) == len(X) // 5
    assert np.all(np.isfinite(history[:, "valid_loss"]))
    assert len(set(history[:, key])) > 1  # the network being trained, not a fixed one
    assert_last_valid_score_is_the_models(model, X, y, score, key)
    check_one_fitted_model(model, X)


def test_group_validation_split_takes_groups_as_a_fit_parameter(task, check_one_fitted_model):
    estimator, X, y, _, _ = task
    groups = np.arange(len(X)) % 3
    model = estimator(train_split=ValidSplit(GroupKFold(3)), **SMALL).fit(X, y, groups=groups)
    assert sum(model.history[-1, "batches", :, "valid_batch_size"]) == len(X) // 3
    check_one_fitted_model(model, X)
    with pytest.raises(ValueError, match=r"fit parameter\(s\) \['group'\]"):
        estimator(train_split=ValidSplit(GroupKFold(3)), **SMALL).fit(X, y, group=groups)
    with pytest.raises(ValueError, match="train_split is None"):
        estimator(**SMALL).fit(X, y, groups=groups)


def test_epoch_scoring_on_train_and_on_valid(task, check_one_fitted_model):
    estimator, X, y, score, split = task
    callbacks = [
        EpochScoring(score, on_train=True, name="train_score", lower_is_better=False),
        EpochScoring(score, on_train=False, name="valid_score", lower_is_better=False),
    ]
    model = estimator(train_split=split, callbacks=callbacks, **SMALL).fit(X, y)
    for name in ("train_score", "valid_score"):
        scores = model.history[:, name]
        assert len(scores) == EPOCHS and len(set(scores)) > 1 and max(scores) <= 1.0
    assert_last_valid_score_is_the_models(model, X, y, score, "valid_score")
    check_one_fitted_model(model, X)


def test_early_stopping_restores_the_best_epoch(task, check_one_fitted_model):
    """A threshold no epoch beats stops after ``patience`` epochs and restores epoch 1,
    whose pruned network is exactly that of a 1-epoch fit."""
    estimator, X, y, _, split = task
    stopper = EarlyStopping(patience=2, threshold=1e6, threshold_mode="abs", load_best=True)
    model = estimator(train_split=split, callbacks=[stopper], **SMALL).fit(X, y)
    assert len(model.history) == 3 and stopper.best_epoch_ == 1
    check_one_fitted_model(model, X)
    params = {**SMALL, "max_epochs": 1}
    one_epoch = estimator(train_split=split, callbacks=[EarlyStopping()], **params).fit(X, y)
    for mine, theirs in zip(
        model.integer_model_.weights, one_epoch.integer_model_.weights, strict=True
    ):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.slow
def test_checkpoint_load_best_and_load_init_state(task, tmp_path, check_one_fitted_model):
    """Checkpoint saves while the pruning masks are attached; load_best at the end of fit,
    LoadInitState at the start of the next fit and load_params after fit all load it."""
    estimator, X, y, _, split = task
    checkpoint = Checkpoint(dirname=str(tmp_path), load_best=True)
    model = estimator(train_split=split, callbacks=[checkpoint], **SMALL).fit(X, y)
    check_one_fitted_model(model, X)
    saved = torch.load(tmp_path / "params.pt", weights_only=True)
    assert "fc0.parametrizations.weight.0.row_keep" in saved
    best = int(np.argmin(model.history[:, "valid_loss"])) + 1
    assert model.history[:, "event_cp"].count(True) >= 1

    # a new estimator resumes from the checkpoint: its history continues the saved one
    resumed = estimator(train_split=split, callbacks=[LoadInitState(checkpoint)], **SMALL)
    resumed.fit(X, y)
    assert len(resumed.history) == best + EPOCHS
    assert resumed.history[best, "train_loss"] < model.history[0, "train_loss"]
    check_one_fitted_model(resumed, X)

    # after fit, load_params makes the loaded network the fitted model
    fresh = estimator(train_split=split, **SMALL).fit(X, y)
    fresh.load_params(checkpoint=checkpoint)
    check_one_fitted_model(fresh, X)
    # the same best epoch, pruned the same way as at the end of the checkpointed fit
    for mine, theirs in zip(
        fresh.integer_model_.weights, model.integer_model_.weights, strict=True
    ):
        np.testing.assert_array_equal(mine, theirs)


def test_a_user_lr_scheduler_replaces_the_cosine_schedule(task, check_one_fitted_model):
    estimator, X, y, _, _ = task
    scheduler = LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5)
    model = estimator(callbacks=[scheduler], **{**SMALL, "lr": 0.01}).fit(X, y)
    assert "lr_schedule" not in dict(model.callbacks_)
    np.testing.assert_allclose(
        model.history[:, "event_lr"], [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025]
    )
    check_one_fitted_model(model, X)


def test_gradient_norm_clipping_bounds_every_step(task, check_one_fitted_model):
    estimator, X, y, _, _ = task
    norms = []

    class Recording(GradientNormClipping):
        def on_grad_computed(self, net, named_parameters, **kwargs):
            named_parameters = list(named_parameters)
            super().on_grad_computed(net, named_parameters, **kwargs)
            grads = [p.grad for _, p in named_parameters if p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    model = estimator(callbacks=[Recording(gradient_clip_value=0.01)], **SMALL).fit(X, y)
    assert norms and max(norms) <= 0.01 + 1e-6
    check_one_fitted_model(model, X)


def test_warm_start_refits_continue_the_fitted_network(task, check_one_fitted_model):
    estimator, X, y, _, _ = task
    model = estimator(warm_start=True, **SMALL).fit(X, y)
    first_loss = model.history[0, "train_loss"]
    widths = model.module_.layer_widths()
    model.fit(X, y)
    assert len(model.history) == 2 * EPOCHS
    assert model.history[EPOCHS, "train_loss"] < first_loss
    assert model.module_.layer_widths() == widths
    check_one_fitted_model(model, X)
    with pytest.raises(ValueError, match="X has 3 features"):
        model.fit(X[:, :3], y)
    assert len(model.history) == 2 * EPOCHS
    check_one_fitted_model(model, X)


def test_initialize_before_any_data_says_to_fit_first():
    # skorch users call initialize() then load_params; the sizes come from the data here.
    model = QNNClassifier()
    with pytest.raises(NotFittedError, match=r"initialize\(\) .* call fit or partial_fit first"):
        model.initialize()
    assert not hasattr(model, "module_")
