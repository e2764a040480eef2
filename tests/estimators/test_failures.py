"""A training call that raises, wherever and whatever, leaves the estimator as it was: a
fitted one answers for the same model (network, integer model, certificate, circuit), an
unfitted one stays unfitted and fits again. A ``KeyboardInterrupt`` inside skorch's epochs
stops training instead, as skorch does (``EarlyStopping`` raises one)."""

import copy
import types

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from skorch.callbacks import Callback

from concrete_qnn import QNNClassifier
from concrete_qnn.estimators.validation import check_device
from concrete_qnn.exceptions import AccumulatorBoundError, InvalidParameterError
from concrete_qnn.qnn_module import SparseQuantNeuralNetwork

SMALL = {
    "max_epochs": 2,
    "module__n_hidden_neurons_multiplier": 1,
    "module__n_hidden_neurons_min": 8,
}
# A device torch cannot use here: "cuda" on a machine without CUDA (the original report).
UNAVAILABLE = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
NOT_AVAILABLE = r"torch\.cuda\.is_available\(\) is False|torch sees \d+ cuda device"


class RaiseAtEpochEnd(Callback):
    """A user's callback that raises ``error`` at the end of the first epoch."""

    def __init__(self, error=None):
        self.error = error

    def on_epoch_end(self, net, **kwargs):
        raise self.error


def _raise(error):
    def method(*args, **kwargs):
        raise error

    return method


def set_device(model, X, y, monkeypatch):
    model.set_params(device=UNAVAILABLE)
    return X, y


def nan_feature(model, X, y, monkeypatch):
    return np.where(X > 2.0, np.nan, X), y


def callback_raises(model, X, y, monkeypatch):
    model.set_params(callbacks=[RaiseAtEpochEnd(RuntimeError("injected in on_epoch_end"))])
    return X, y


def certification_fails(model, X, y, monkeypatch):
    error = AccumulatorBoundError("injected in make_pruning_permanent")
    monkeypatch.setattr(SparseQuantNeuralNetwork, "make_pruning_permanent", _raise(error))
    return X, y


def interrupted_while_certifying(model, X, y, monkeypatch):
    """Ctrl-C after the epochs: skorch does not catch it there."""
    monkeypatch.setattr(
        SparseQuantNeuralNetwork, "make_pruning_permanent", _raise(KeyboardInterrupt())
    )
    return X, y


# How each failure is injected (it may set parameters: the state to keep is taken after),
# and what the call raises.
FAILURES = {
    "device": (set_device, InvalidParameterError, NOT_AVAILABLE),
    "data": (nan_feature, ValueError, "NaN"),
    "callback": (callback_raises, RuntimeError, "injected in on_epoch_end"),
    "certificate": (certification_fails, AccumulatorBoundError, "injected"),
    "interrupt": (interrupted_while_certifying, KeyboardInterrupt, None),
}
CALLS = {
    "fit": lambda model, X, y: model.fit(X, y),
    "warm_start fit": lambda model, X, y: model.fit(X, y),  # warm_start set by the test
    "partial_fit": lambda model, X, y: model.partial_fit(X, y),
    "prune": lambda model, X, y: model.prune(X, y, 0.25),
}


@pytest.fixture(scope="module", params=[None, 0], ids=["random_state=None", "random_state=0"])
def fitted(request, iris):
    return QNNClassifier(random_state=request.param, **SMALL).fit(*iris)


def state(model, X):
    """What a failed call must leave as it was."""
    return {
        "attributes": sorted(vars(model)),
        "network": {
            name: value.cpu().numpy().tobytes()
            for name, value in model.module_.state_dict().items()
        },
        "history": len(model.history),
        "predictions": model.predict_proba(X).tobytes(),
        "certificate": model.certificate_.rows(),
    }


@pytest.mark.slow
@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_call_keeps_the_fitted_model(
    failure, call, fitted, iris, monkeypatch, same_integer_model
):
    inject, error, message = FAILURES[failure]
    model = copy.deepcopy(fitted)  # compiled, with a stand-in circuit (concrete not run)
    model.fhe_circuit_ = types.SimpleNamespace(integer_model=model.integer_model_)
    X, y = inject(model, *iris, monkeypatch)
    if call == "warm_start fit":
        model.set_params(warm_start=True)
    integer, circuit, before = model.integer_model_, model.fhe_circuit_, state(model, iris[0])
    with pytest.raises(error, match=message):
        CALLS[call](model, X, y)
    monkeypatch.undo()
    assert state(model, iris[0]) == before
    assert model.integer_model_ is integer
    assert model._compiled_circuit() is circuit
    # the network, its optimizer and its history are the ones before the call: training on
    # continues as from a copy taken before it
    model.set_params(device="cpu", callbacks=None)
    if model.random_state is not None:
        same_integer_model(model.partial_fit(*iris), copy.deepcopy(fitted).partial_fit(*iris))


@pytest.mark.parametrize("random_state", [None, 0], ids=["random_state=None", "random_state=0"])
@pytest.mark.parametrize("call", ["fit", "partial_fit"])
@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_first_call_leaves_the_estimator_unfitted(
    failure, call, random_state, iris, monkeypatch, same_integer_model
):
    inject, error, message = FAILURES[failure]
    model = QNNClassifier(random_state=random_state, **SMALL)
    X, y = inject(model, *iris, monkeypatch)
    before = dict(vars(model))
    with pytest.raises(error, match=message):
        CALLS[call](model, X, y)
    monkeypatch.undo()
    assert vars(model) == before
    with pytest.raises(NotFittedError):
        model.predict(iris[0])
    model.set_params(device="cpu", callbacks=None)
    refitted = CALLS[call](model, *iris)
    if random_state is not None:
        same_integer_model(refitted, CALLS[call](QNNClassifier(random_state=0, **SMALL), *iris))


def test_an_interrupted_epoch_ends_training_with_the_model_trained_so_far(
    iris, check_one_fitted_model
):
    """skorch's convention (a KeyboardInterrupt, from Ctrl-C or ``EarlyStopping``, stops the
    epochs): the network trained so far is pruned, certified and becomes the fitted model."""
    interrupt = RaiseAtEpochEnd(KeyboardInterrupt())
    model = QNNClassifier(random_state=0, callbacks=[interrupt], **{**SMALL, "max_epochs": 5})
    model.fit(*iris)
    assert len(model.history) == 1
    check_one_fitted_model(model, iris[0])


@pytest.mark.parametrize("device", ["cpu", "cpu:0", torch.device("cpu"), None])
def test_devices_accepted(device):
    check_device(device)


@pytest.mark.parametrize(
    ("device", "message"),
    [
        (UNAVAILABLE, NOT_AVAILABLE),
        ("cuda:99", NOT_AVAILABLE),
        ("gpu", "device must be 'cpu', 'cuda', 'cuda:N', 'mps'"),
        ("meta", "device must be 'cpu', 'cuda', 'cuda:N', 'mps'"),
        (3, "device"),
    ],
)
def test_devices_refused_before_training(device, message, iris):
    model = QNNClassifier(device=device, **SMALL)
    with pytest.raises(InvalidParameterError, match=message):
        model.fit(*iris)
    assert not hasattr(model, "module_")
