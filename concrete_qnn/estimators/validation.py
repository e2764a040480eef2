"""What the estimators check before they change anything: parameters, data, sample weights.

The settings the estimator itself validates are declared as data (``SETTINGS``: one
``Constraint`` per parameter); the ``module__*`` parameters are validated by building a
throwaway ``SparseQuantNeuralNetwork``. Bad hyperparameters raise ``InvalidParameterError``;
bad data raise ``ValueError``.
"""

from __future__ import annotations

import inspect
import numbers

import numpy as np
import torch
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from concrete_qnn.accumulator import lookup_bits_per_layer
from concrete_qnn.constraints import Constraint, is_integer, number_in
from concrete_qnn.exceptions import InvalidParameterError
from concrete_qnn.integer import require_lookup_bits
from concrete_qnn.nn.network import SparseQuantNeuralNetwork
from concrete_qnn.training.batching import TrainingData
from concrete_qnn.training.callbacks import PRUNING

# Parameters fixed by the data, never by the user.
DATA_PARAMETERS = ("module", "module__input_dim", "module__n_outputs")


# The estimator's own settings, checked in this order at the start of every training call.
SETTINGS = {
    "progress_bar": Constraint(lambda value: isinstance(value, bool), "True or False"),
    "random_state": Constraint(
        lambda value: value is None or is_integer(value), "None or an integer"
    ),
    # skorch trains nothing at 0 and the model would still be certified and fitted
    "max_epochs": Constraint(
        lambda value: (
            (isinstance(value, str) and value == "auto") or (is_integer(value) and value >= 1)
        ),
        '"auto" or an integer >= 1',
    ),
    # else torch's sampler refuses it mid-fit, after the network was rebuilt
    "batch_size": Constraint(
        lambda value: (
            (isinstance(value, str) and value == "auto")
            or (is_integer(value) and (value >= 1 or value == -1))
        ),
        '"auto", an integer >= 1, or -1 (every row in one batch, as in skorch)',
    ),
}
# ``prune``'s fraction of hidden neurons.
PRUNE_PERCENTAGE = number_in(0, 1)
# The device types training runs on: what says whether torch can use one here, that check,
# and how many devices of the type torch sees. ``device=None`` (skorch: move nothing) trains
# where the network is built, on the CPU.
DEVICES = {
    "cpu": ("always", lambda: True, lambda: 1),
    "cuda": ("torch.cuda.is_available()", torch.cuda.is_available, torch.cuda.device_count),
    "mps": ("torch.backends.mps.is_available()", torch.backends.mps.is_available, lambda: 1),
}


def refuse_data_parameters(net, params) -> None:
    """Refuse ``DATA_PARAMETERS`` among ``params`` (``__init__`` or ``set_params``)."""
    given = [name for name in DATA_PARAMETERS if name in params]
    if given:
        raise InvalidParameterError(
            f"{type(net).__name__} sets {', '.join(given)} itself: the module is "
            "SparseQuantNeuralNetwork, input_dim and n_outputs come from the data in fit"
        )


def refuse_skorch_compile(net, asked: bool) -> None:
    """Refuse skorch's ``compile`` flag (torch.compile) where ``asked``: the estimators'
    ``compile(X)`` is the FHE method."""
    if asked:
        raise InvalidParameterError(
            f"{type(net).__name__} does not take skorch's compile (torch.compile): its "
            "compile(X) method builds the FHE circuit"
        )


def training_data(net, X, y, sample_weight, fit_params, first, classes) -> TrainingData:
    """Validate one training call of ``net``; a first call also records the data's
    description (features, labels or target statistics, ``n_outputs_``).

    Raises
    ------
    InvalidParameterError
        Invalid settings, ``module__*`` parameters, fit parameters, or a criterion without
        per-row losses for ``sample_weight``.
    ValueError
        Invalid data or weights; a continuing call whose data or ``module__*`` parameters
        do not match the fitted network. The caller puts ``net`` back on any error
        (``lifecycle.restored_on_error``).
    """
    check_settings(net)
    if not first:
        check_network_matches_parameters(net)
    if y is None:
        raise ValueError(f"{type(net).__name__} requires y to be passed, but the target y is None")
    X, y = validate_data(
        net,
        to_numpy(X),
        to_numpy(y),
        reset=first,
        dtype=np.float32,
        multi_output=True,
        y_numeric=False,
    )
    weight = None
    if sample_weight is not None:
        weight = _check_sample_weight(
            to_numpy(sample_weight), X, dtype=np.float64, ensure_non_negative=True
        )
        if not np.all(np.isfinite(weight)):
            raise ValueError("sample_weight contains NaN or infinity")
        if not np.all(weight > 0):  # rows of weight 0 are left out entirely
            rows = np.flatnonzero(weight > 0)
            fit_params = {
                name: _safe_indexing(value, rows) if _has_rows(value, len(X)) else value
                for name, value in fit_params.items()
            }
            X, y, weight = X[rows], y[rows], weight[rows]
        weight = _relative_weights(weight)
    y, n_outputs = net._validate_targets(y, reset=first, classes=classes, sample_weight=weight)
    if first:
        net.n_outputs_ = n_outputs
        _check_module_parameters(net)
    _check_split_params(net, fit_params)
    if weight is not None:
        _check_criterion_takes_weights(net.criterion)
    return TrainingData(X, y, weight, fit_params)


def check_settings(net) -> None:
    """``SETTINGS``, the device, the table sizes, and no parameter of the pruning callback."""
    for name, constraint in SETTINGS.items():
        constraint.check(name, getattr(net, name))
    check_device(net.device)
    module_params = net.get_params_for("module")
    n_layers = module_params.get("n_layers", 3)
    if isinstance(n_layers, numbers.Integral) and n_layers >= 1:  # else the module refuses
        lookup = lookup_bits_per_layer(net.rounding_threshold_bits, n_layers - 1)
        _check_table_sizes(module_params.get("n_accum_bits", 8), lookup, net)
    for name in vars(net):
        if name.startswith(f"callbacks__{PRUNING}"):
            raise InvalidParameterError(
                f"{name} cannot be set: the accumulator_pruning callback is what makes "
                "the accumulator certificate hold"
            )


def check_device(device) -> None:
    """Refuse a ``device`` torch cannot train on here (else torch raises from inside the fit,
    as ``AssertionError: Torch not compiled with CUDA enabled``)."""
    if device is None:
        return
    try:
        kind = torch.device(device)
    except (RuntimeError, TypeError):
        kind = None
    if kind is None or kind.type not in DEVICES:
        raise InvalidParameterError(
            "device must be 'cpu', 'cuda', 'cuda:N', 'mps', a torch.device of these or None, "
            f"got {device!r}"
        )
    available, is_available, count = DEVICES[kind.type]
    if not is_available():
        built = f"torch {torch.__version__}" + (
            " is built without CUDA" if kind.type == "cuda" and torch.version.cuda is None else ""
        )
        raise InvalidParameterError(
            f"device={device!r} is not available here: {available} is False ({built}); "
            "train with device='cpu'"
        )
    if (kind.index or 0) >= count():
        raise InvalidParameterError(
            f"device={device!r} is not available here: torch sees {count()} {kind.type} "
            f"device(s), numbered from 0"
        )


def _check_table_sizes(n_accum_bits, lookup_bits: list, net) -> None:
    """Refuse, before training, a network whose integer model could need tables of more
    than ``2^MAX_LOOKUP_BITS`` entries per neuron: a certified accumulator has at most
    ``n_accum_bits`` bits, its table reads at most ``rounding_threshold_bits``."""
    if not is_integer(n_accum_bits):
        return  # the module refuses it
    widest = max((min(n_accum_bits, bits or n_accum_bits) for bits in lookup_bits), default=0)
    require_lookup_bits(
        widest,
        f"with module__n_accum_bits={n_accum_bits} and rounding_threshold_bits="
        f"{net.rounding_threshold_bits!r}, a table",
    )


def _check_module_parameters(net) -> None:
    """Build a throwaway network (the caller's torch RNG untouched) to validate the
    ``module__*`` parameters before a first training call changes anything."""
    try:
        with torch.random.fork_rng(devices=[]):
            SparseQuantNeuralNetwork(
                input_dim=net.n_features_in_,
                n_outputs=net.n_outputs_,
                **net.get_params_for("module"),
            )
    except TypeError as error:
        raise InvalidParameterError(f"invalid module__ parameter: {error}") from None


def check_network_matches_parameters(net) -> None:
    """Refuse (ValueError) to continue training a network built with other ``module__*``
    values (``partial_fit``, ``prune``, ``fit`` with ``warm_start=True``)."""
    built = net.module_.get_config()
    changed = [
        f"module__{name}={value!r} (the network has {built.get(name, 'no such parameter')!r})"
        for name, value in net.get_params_for("module").items()
        if name not in built or built[name] != value
    ]
    if changed:
        raise ValueError(
            "module parameters changed since the network was built: "
            f"{', '.join(changed)}; partial_fit, prune and fit with warm_start=True "
            "continue training that network: call fit (warm_start=False) to train a new "
            "one, or set the parameters back"
        )


def _check_split_params(net, fit_params: dict) -> None:
    """Fit parameters other than ``sample_weight`` belong to ``train_split``."""
    if not fit_params:
        return
    try:
        if net.train_split is None:
            raise TypeError("train_split is None")
        inspect.signature(net.train_split).bind(None, None, **fit_params)
    except (TypeError, ValueError) as error:
        raise InvalidParameterError(
            f"{type(net).__name__}.fit got the fit parameter(s) {sorted(fit_params)}: "
            "besides sample_weight, fit parameters go to train_split, which does not "
            f"take them ({error})"
        ) from None


def _check_criterion_takes_weights(criterion) -> None:
    takes = (
        "reduction" in inspect.signature(criterion).parameters
        if isinstance(criterion, type)
        else hasattr(criterion, "reduction")
    )
    if not takes:
        raise InvalidParameterError(
            f"sample_weight needs per-row losses: criterion {criterion!r} has no "
            "'reduction' argument, as torch.nn losses have"
        )


def validate_predict_data(net, X) -> np.ndarray:
    """``X`` as float32 (n_samples, n_features) for a fitted ``net``.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``net`` is not fitted.
    ValueError
        If ``X`` is empty, not finite, or has other features than the fitted data.
    """
    check_is_fitted(net)
    return validate_data(net, to_numpy(X), reset=False, dtype=np.float32)


def _relative_weights(weight: np.ndarray) -> np.ndarray | None:
    """Positive weights (n,) scaled to mean 1, float32; None when they are all equal."""
    if np.all(weight == weight[0]):
        return None
    weight = weight / weight.max()
    return (weight / weight.mean()).astype(np.float32)


def _has_rows(value, n_rows: int) -> bool:
    """Whether a fit parameter is an array-like with one entry per row."""
    return (
        hasattr(value, "__len__")
        and not isinstance(value, (str, bytes, dict))
        and len(value) == n_rows
    )


def to_numpy(data):
    """Accept torch tensors wherever numpy arrays are accepted."""
    if isinstance(data, torch.Tensor):
        return data.detach().cpu().numpy()
    return data
