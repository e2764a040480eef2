"""Changes after fit: every method answers for one and the same model, or the call is
refused with a clear error before any state changes."""

import copy
import importlib.util
import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from skorch.callbacks import EpochScoring

import concrete_qnn.fhe
import concrete_qnn.onnx_export
from concrete_qnn import QNNClassifier, QNNRegressor, load

SMALL = {
    "max_epochs": 3,
    "random_state": 0,
    "module__n_hidden_neurons_multiplier": 1,
    "module__n_hidden_neurons_min": 0,
    "module__learned_lookups": False,  # QONNX export needs fixed activations (iris: 4 features)
}

# set_params changes on a fitted estimator; module__* ones describe another network
CHANGES = {
    "module__n_w_bits": {"module__n_w_bits": 2},
    "module__n_layers": {"module__n_layers": 2},
    "module__n_prune_neurons_percentage": {"module__n_prune_neurons_percentage": 0.5},
    "lr": {"lr": 0.05},
    "max_epochs": {"max_epochs": 2},
    "batch_size": {"batch_size": 16},
    "callbacks": {"callbacks": [EpochScoring("accuracy", on_train=True, name="train_acc")]},
    "criterion": {"criterion": torch.nn.MultiMarginLoss},
}


@pytest.fixture(scope="module")
def fitted(iris):
    return QNNClassifier(**SMALL).fit(*iris)


def parameters(model):
    """get_params(deep=False), callbacks by class (copies hold copies of the callbacks)."""
    params = model.get_params(deep=False)
    params["callbacks"] = [type(callback) for callback in params["callbacks"] or []]
    return params


def snapshot(model, X):
    """What a refused call must leave unchanged."""
    return (
        sorted(vars(model)),
        parameters(model),
        {name: value.cpu().numpy().tobytes() for name, value in model.module_.state_dict().items()},
        len(model.history),
        model.predict_proba(X).tobytes(),
    )


def compiled_model(model, X, monkeypatch):
    """The integer model ``compile`` hands to the FHE compiler (concrete not run)."""
    monkeypatch.setattr(concrete_qnn.fhe, "FHECircuit", lambda integer, inputs: integer)
    model.compile(X)
    monkeypatch.undo()
    return model.fhe_circuit_


def exported_network(model, monkeypatch):
    """The network ``export_onnx`` hands to the exporter (the exporter itself not run)."""
    seen = []
    monkeypatch.setattr(
        concrete_qnn.onnx_export, "export_onnx", lambda module, *args: seen.append(module)
    )
    model.export_onnx("unused.onnx")
    monkeypatch.undo()
    return seen[0]


@pytest.mark.slow
@pytest.mark.parametrize("change", CHANGES)
def test_every_method_answers_for_one_model_after_set_params(
    change, fitted, iris, tmp_path, monkeypatch, check_one_fitted_model
):
    X, y = iris
    model = copy.deepcopy(fitted).set_params(**CHANGES[change])
    expected = fitted.predict_proba(X)
    # the fitted model still answers, and module_ is the network it was built from
    np.testing.assert_array_equal(model.predict_proba(X), expected)
    np.testing.assert_array_equal(model.predict(X), fitted.predict(X))
    assert model.score(X, y) == fitted.score(X, y)
    assert model.certificate_.to_text() == fitted.certificate_.to_text()
    check_one_fitted_model(model, X)
    assert exported_network(model, monkeypatch) is model.module_
    assert compiled_model(model, X[:20], monkeypatch) is model.integer_model_
    model.save(tmp_path / "model.npz")
    np.testing.assert_array_equal(load(tmp_path / "model.npz").predict_proba(X), expected)
    for duplicate in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        np.testing.assert_array_equal(duplicate.predict_proba(X), expected)
        assert parameters(duplicate) == parameters(model)
        check_one_fitted_model(duplicate, X)
    fresh = clone(model)
    assert not hasattr(fresh, "integer_model_")
    assert parameters(fresh) == parameters(model)

    history = len(model.history)
    if change.startswith("module__"):
        # continuing the fitted network under other module parameters is refused
        before = snapshot(model, X)
        warm = copy.deepcopy(model).set_params(warm_start=True)
        for call in (
            lambda: model.partial_fit(X, y),
            lambda: model.prune(X, y, 0.25),
            lambda: warm.fit(X, y),
        ):
            with pytest.raises(ValueError, match="module parameters changed since the network"):
                call()
            assert snapshot(model, X) == before
        # fit trains a network with the new parameters
        model.fit(X, y)
        name, value = next(iter(CHANGES[change].items()))
        assert model.module_.get_config()[name.removeprefix("module__")] == value
    else:
        pruned = model.prune(X, y, 0.25)
        check_one_fitted_model(pruned, X)
        assert pruned.module_.layer_widths() == [4, 3, 3, 3]
        np.testing.assert_array_equal(model.predict_proba(X), expected)
        model.partial_fit(X, y)
        new_epochs = model.history[history:]
        assert len(new_epochs) == model.max_epochs
        if change == "lr":
            assert new_epochs[0]["lr"] == 0.05
        if change == "batch_size":
            assert new_epochs[0]["train_batch_count"] == math.ceil(len(X) / 16)
        if change == "callbacks":
            assert "train_acc" in new_epochs[0]
        if change == "criterion":
            assert isinstance(model.criterion_, torch.nn.MultiMarginLoss)
    check_one_fitted_model(model, X)


@pytest.mark.slow
@pytest.mark.skipif(not importlib.util.find_spec("onnx"), reason="needs the onnx extra")
def test_export_and_compile_after_set_params_use_the_fitted_network(fitted, iris, tmp_path):
    """The original failure: after set_params(module__n_w_bits=2), export_onnx exported
    an untrained network and pickle, deepcopy and prune crashed."""
    import onnx

    X, _ = iris
    fitted.export_onnx(tmp_path / "before.onnx")
    model = copy.deepcopy(fitted).set_params(module__n_w_bits=2)
    model.export_onnx(tmp_path / "after.onnx")
    graphs = [onnx.load(tmp_path / name).graph for name in ("before.onnx", "after.onnx")]
    tensors = [
        {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in graph.initializer}
        for graph in graphs
    ]
    assert tensors[0].keys() == tensors[1].keys()
    for name, array in tensors[0].items():
        np.testing.assert_array_equal(tensors[1][name], array)
    if importlib.util.find_spec("concrete"):
        model.compile(X[:20])
        np.testing.assert_array_equal(
            model.predict_proba(X[:5], fhe="simulate"), fitted.predict_proba(X[:5])
        )


def test_set_params_refuses_data_parameters_and_torch_compile(fitted, iris):
    model = copy.deepcopy(fitted)
    before = snapshot(model, iris[0])
    for params in ({"module__input_dim": 3, "lr": 0.1}, {"compile__mode": "max-autotune"}):
        with pytest.raises(ValueError, match=r"sets module__input_dim itself|skorch's compile"):
            model.set_params(**params)
        assert snapshot(model, iris[0]) == before


def test_initialize_drops_the_fitted_model(fitted, iris):
    model = copy.deepcopy(fitted).initialize()
    with pytest.raises(NotFittedError):
        model.predict(iris[0])


# ---------------------------------------------------------------------- data changes
DATA_CHANGES = {
    "fewer features": (lambda X, y: (X[:, :3], y), "X has 3 features"),
    "unseen label": (lambda X, y: (X, np.where(y == 2, 7, y)), "labels not seen"),
    "NaN feature": (lambda X, y: (np.where(X > 2.5, np.nan, X), y), "contains NaN"),
    "no rows": (lambda X, y: (X[:0], y[:0]), "0 sample"),
}


@pytest.mark.parametrize("change", DATA_CHANGES)
def test_continuing_on_other_data_is_refused_before_any_state_changes(change, fitted, iris):
    transform, message = DATA_CHANGES[change]
    X, y = transform(*iris)
    model = copy.deepcopy(fitted)
    warm = copy.deepcopy(fitted).set_params(warm_start=True)
    before, warm_before = snapshot(model, iris[0]), snapshot(warm, iris[0])
    for call in (
        lambda: model.partial_fit(X, y),
        lambda: model.prune(X, y, 0.25),
        lambda: warm.fit(X, y),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    assert snapshot(model, iris[0]) == before
    assert snapshot(warm, iris[0]) == warm_before


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (lambda y: np.column_stack([y, y[:, 0]]), "y has 3 target columns, the first fit had 2"),
        (lambda y: y[:, 0], "y has 1 dimensions, the first fit had 2"),
    ],
)
def test_the_regressor_refuses_other_targets_when_continuing(iris, targets, message):
    X, _ = iris
    y = np.column_stack([X[:, 0] + X[:, 1], X[:, 2]])
    model = QNNRegressor(**SMALL).fit(X, y)
    before = (sorted(vars(model)), len(model.history), model.predict(X).tobytes())
    with pytest.raises(ValueError, match=message):
        model.partial_fit(X, targets(y))
    assert (sorted(vars(model)), len(model.history), model.predict(X).tobytes()) == before
