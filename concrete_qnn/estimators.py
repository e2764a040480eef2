"""QNNClassifier and QNNRegressor: skorch estimators around SparseQuantNeuralNetwork."""

from __future__ import annotations

import copy
import inspect
import math
import numbers
import warnings
from contextlib import contextmanager
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.utils import _safe_indexing
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)
from skorch import NeuralNet, NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import LRScheduler, ProgressBar
from skorch.dataset import Dataset
from skorch.utils import to_tensor
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, Subset

from concrete_qnn.accumulator import lookup_bits_per_layer
from concrete_qnn.callbacks import AccumulatorPruning, CosineLearningRate
from concrete_qnn.certificate import AccumulatorCertificate
from concrete_qnn.fhe import check_fhe_mode
from concrete_qnn.integer_model import MAX_LOOKUP_BITS, OutputHead
from concrete_qnn.qnn_module import SparseQuantNeuralNetwork

# Bits of the certified accumulator each table lookup reads (see benchmarks/FHE_COST.md).
DEFAULT_ROUNDING_THRESHOLD_BITS = 5
# A hidden layer's lookup that reads this many bits or fewer, where more were asked for, has
# lost its accumulator: iris at module__n_accum_bits=16 with the default 5-bit lookups
# certified layers at 13 and 9 bits that read 2 and 1 bits, and scored 0.342 held out
# (rounding_threshold_bits=13: 0.974).
COARSE_LOOKUP_BITS = 2

# Hidden neurons per feature. The module's (the peer's) 4 costs twice the encrypted lookups
# for nothing: 5-fold at 2 against 4, breast_cancer 0.9719/0.9701 (128 lookups, not 240),
# digits 0.9766/0.9755, synthetic 0.8850/0.8825 (benchmarks/SUITES.md at 2; README Results).
DEFAULT_HIDDEN_NEURONS_MULTIPLIER = 2

# Fewest neurons per hidden layer: 2 features times the multiplier 4 are too few to bend a
# boundary (make_circles 5-fold accuracy: 0.859 at 8 neurons, 0.959 at 64; README Results).
DEFAULT_HIDDEN_NEURONS_MIN = 64

# batch_size="auto": today's batches up to this many rows, then bounded steps per epoch.
AUTO_BATCH_ROWS = 10_000
AUTO_MIN_STEPS = 50
# Batch size beyond which the auto learning-rate factor stops growing.
AUTO_MAX_LR_BATCH = 2048

# Parameters fixed by the data, never by the user.
_DATA_PARAMETERS = ("module", "module__input_dim", "module__n_outputs")


class _TrainingData(NamedTuple):
    """One training call's data, validated, as skorch receives it.

    ``X`` float32 (n_rows, n_features) and ``y`` (encoded labels, int64 (n_rows,), or
    standardized targets, float32 (n_rows, n_targets)) hold the rows of positive weight;
    ``sample_weight`` is float32 (n_rows,) with mean 1, or None when every row weighs the
    same; ``split_params`` are the fit parameters of ``train_split``, for the same rows.
    """

    X: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray | None
    split_params: dict


class _QNNEstimatorMixin:
    """What both estimators add to skorch: data validation, seeding, pruning, ``prune``.

    Subclasses implement ``_validate_targets(y, reset, classes, sample_weight) ->
    (y_for_torch, n_outputs)`` (``classes``: ``partial_fit``'s argument, else None) and
    ``_output_head()``.

    Two rules keep every method answering for one and the same model:

    - ``integer_model_`` exists exactly when ``module_`` is the pruned network it was
      built from. A training call drops it before training and rebuilds it after;
      ``set_params`` stores ``module__*`` parameters for the next ``fit`` without
      rebuilding the fitted network; ``load_params`` outside ``fit`` rebuilds it.
    - A training call validates everything (data, weights, parameters, and for calls that
      continue the fitted network, that its ``module__*`` parameters are unchanged)
      before it changes any state; a refused call leaves every attribute as it was.
    """

    # skorch sets these three in __init__; scikit-learn's rule is that __init__ sets
    # parameters only, so they live here until ``initialize`` sets them on the instance.
    history_ = None
    initialized_ = False
    virtual_params_ = MappingProxyType({})
    # True only while skorch's training loop runs (``_training_loop``).
    _in_training_loop = False

    def _init_qnn(
        self, module_params: dict, random_state, progress_bar, rounding_threshold_bits, kwargs
    ) -> None:
        if kwargs.pop("compile", False):
            raise ValueError(
                f"{type(self).__name__} does not take skorch's compile (torch.compile): its "
                "compile(X) method builds the FHE circuit"
            )
        self._refuse_data_parameters(kwargs)
        super().__init__(SparseQuantNeuralNetwork, **module_params, **kwargs)
        for name in ("history_", "initialized_", "virtual_params_", "compile"):
            del self.__dict__[name]
        self.random_state = random_state
        self.progress_bar = progress_bar
        self.rounding_threshold_bits = rounding_threshold_bits

    def _refuse_data_parameters(self, params) -> None:
        given = [name for name in _DATA_PARAMETERS if name in params]
        if given:
            raise ValueError(
                f"{type(self).__name__} sets {', '.join(given)} itself: the module is "
                "SparseQuantNeuralNetwork, input_dim and n_outputs come from the data in fit"
            )

    # ------------------------------------------------------------------ parameters
    def _get_param_names(self):
        hidden = {"module", "_params_to_validate"}
        return [name for name in super()._get_param_names() if name not in hidden]

    def set_params(self, **params):
        """Set parameters; on a fitted estimator they apply to the next training call.

        ``module__*`` parameters are stored without rebuilding the fitted network (skorch
        would replace it by an untrained one): ``predict``, ``export_onnx``, pickling and
        the rest keep answering for the fitted model, ``fit`` builds a network with the
        new parameters, and ``partial_fit``, ``prune`` and a ``warm_start`` fit refuse to
        continue a network whose parameters changed. Training parameters (``lr``,
        ``max_epochs``, ``batch_size``, ``criterion``, ``optimizer``, ``callbacks``, ...)
        apply from the next training call on. A new ``rounding_threshold_bits`` on a fitted
        estimator rebuilds ``integer_model_`` from the trained network at once (no refit; a
        compiled circuit is dropped): ``predict``, ``save`` and ``compile`` then use it.

        Raises
        ------
        ValueError
            For ``module``, ``module__input_dim``, ``module__n_outputs`` (set from the
            data), skorch's ``compile`` (this class's ``compile`` is the FHE method) and an
            invalid ``rounding_threshold_bits`` on a fitted estimator; nothing is set then.
        """
        self._refuse_data_parameters(params)
        if any(name == "compile" or name.startswith("compile__") for name in params):
            raise ValueError(
                f"{type(self).__name__} does not take skorch's compile (torch.compile): its "
                "compile(X) method builds the FHE circuit"
            )
        rounded = None
        if "rounding_threshold_bits" in params and self.__sklearn_is_fitted__():
            rounded = self._integer_model(params["rounding_threshold_bits"])  # validates
        module_params = {name: value for name, value in params.items() if name[:8] == "module__"}
        super().set_params(**{name: params[name] for name in params.keys() - module_params})
        vars(self).update(module_params)
        if rounded is not None:
            self.integer_model_ = rounded
            vars(self).pop("fhe_circuit_", None)
        if self.initialized_:  # skorch would keep these three until the next initialize
            if "callbacks" in params:
                self._initialize_callbacks()
            if "criterion" in params:
                self._initialize_criterion()
            if "criterion" in params or "optimizer" in params:
                self._initialize_optimizer()
        return self

    @property
    def _default_callbacks(self):
        progress = [("progress_bar", ProgressBar())]
        user_bar = self._user_callback(ProgressBar)
        schedule = [("lr_schedule", CosineLearningRate())]
        # A callback of the same kind in ``callbacks`` replaces the default: one bar, and the
        # user's learning-rate schedule instead of one fighting the default cosine schedule.
        return [
            *super()._default_callbacks,
            *(progress if self.progress_bar is True and not user_bar else []),
            *([] if self._user_callback(LRScheduler, CosineLearningRate) else schedule),
            ("accumulator_pruning", AccumulatorPruning()),
        ]

    def _user_callback(self, *kinds: type) -> bool:
        """True if ``callbacks`` holds a callback (class or instance) of one of ``kinds``."""
        for item in self.callbacks or []:
            callback = item[1] if isinstance(item, (tuple, list)) else item
            kind = callback if isinstance(callback, type) else type(callback)
            if issubclass(kind, kinds):
                return True
        return False

    def initialize_callbacks(self):
        """skorch's callbacks, with the pruning moved after every other one."""
        super().initialize_callbacks()
        pruning = [item for item in self.callbacks_ if item[0] == "accumulator_pruning"]
        others = [item for item in self.callbacks_ if item[0] != "accumulator_pruning"]
        self.callbacks_ = others + pruning
        return self

    def torch_compile(self, module, name):
        """No torch.compile: ``compile`` is the FHE method here (skorch's flag is removed)."""
        return module

    def initialize(self):
        """skorch's ``initialize``: a new, untrained network (the fitted model is dropped).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before any ``fit`` or ``partial_fit``: the network's sizes come from the data
            (``n_features_in_``, ``n_outputs_``). Nothing changes then.
        """
        if not (hasattr(self, "n_features_in_") and hasattr(self, "n_outputs_")):
            raise NotFittedError(
                f"{type(self).__name__}.initialize() builds the network for the data's "
                "features and classes (or targets), which it has not seen: call fit or "
                "partial_fit first (a few rows will do), then load_params"
            )
        self._forget_fitted_model()
        return super().initialize()

    def initialize_module(self):
        """Build the module with ``input_dim`` and ``n_outputs`` taken from the data."""
        self.module_ = SparseQuantNeuralNetwork(
            input_dim=self.n_features_in_,
            n_outputs=self.n_outputs_,
            **self.get_params_for("module"),
        )
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "integer_model_")

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, sample_weight=None, **fit_params):
        """Train a new network on ``X``, ``y``; prune it; build the integer model.

        With ``warm_start=True``, a fitted estimator continues training its network
        instead, as ``partial_fit`` does.

        Parameters
        ----------
        X : array-like (n_samples, n_features)
        y : array-like (n_samples,), or (n_samples, n_targets) for the regressor
        sample_weight : array-like (n_samples,) or float, optional
            Finite, non-negative weights of the rows in the loss (training and
            validation); only their ratios matter. Rows of weight 0 are left out
            entirely, as if they were not passed: labels, target statistics, the
            validation split and the batches are those of the other rows.
        **fit_params
            Parameters of ``train_split``, such as ``groups`` for a ``ValidSplit`` over
            ``GroupKFold``; arrays are indexed like the rows.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Before any state changes: invalid data, weights, parameters or fit
            parameters; with ``warm_start``, data or ``module__*`` parameters that do
            not match the fitted network.
        """
        continuing = bool(self.warm_start) and self.initialized_
        return self._fit(X, y, sample_weight, fit_params, first=not continuing)

    def partial_fit(self, X, y, classes=None, sample_weight=None, **fit_params):
        """Train ``max_epochs`` more epochs from the current weights (initializes once).

        ``classes`` (first call only) lists every label to expect; the other arguments
        and the errors are those of ``fit``. The network must still match its
        ``module__*`` parameters (ValueError otherwise).
        """
        first = not self.initialized_
        return self._fit(X, y, sample_weight, fit_params, first=first, classes=classes)

    def _fit(self, X, y, sample_weight, fit_params: dict, first: bool, classes=None):
        data = self._validate_training_call(X, y, sample_weight, fit_params, first, classes)
        with self._seeded():
            if first:
                self.initialize()
            self._train(data)
        return self

    def _train(self, data: _TrainingData) -> None:
        """skorch's training loop (pruning runs in its callback), then the integer model."""
        self._forget_fitted_model()
        self.batch_size_ = auto_batch_size(len(data.X)) if self.batch_size == "auto" else None
        self.learning_rate_factor_ = (
            1.0 if self.batch_size_ is None else auto_learning_rate_factor(self.batch_size_)
        )
        X = data.X
        if data.sample_weight is not None:
            X = {"X": data.X, "sample_weight": data.sample_weight}
        rounding = self.module_.rounded_lookups(self.rounding_threshold_bits)
        with self._training_loop(), rounding:
            NeuralNet.partial_fit(self, X, data.y, **data.split_params)
        self._build_integer_model()

    @contextmanager
    def _training_loop(self):
        """Mark skorch's training loop: ``predict`` then answers for the network being
        trained, as skorch's scoring callbacks expect."""
        self._in_training_loop = True
        try:
            yield
        finally:
            vars(self).pop("_in_training_loop", None)

    def _build_integer_model(self) -> None:
        self.integer_model_ = self._integer_model(self.rounding_threshold_bits)

    def _integer_model(self, rounding_threshold_bits):
        """The trained module as an integer model whose lookups read
        ``rounding_threshold_bits`` bits (see ``SparseQuantNeuralNetwork.to_integer_model``)."""
        integer_model = self.module_.to_integer_model(
            self._output_head(), getattr(self, "feature_names_in_", None), rounding_threshold_bits
        )
        self._warn_coarse_lookups(integer_model.certificate, rounding_threshold_bits)
        return integer_model

    def _warn_coarse_lookups(self, certificate, rounding_threshold_bits) -> None:
        """Warn where a hidden layer's lookup reads ``COARSE_LOOKUP_BITS`` bits or fewer
        although more were asked for (a layer certified far below ``n_accum_bits``)."""
        hidden = certificate.layers[:-1]
        asked = lookup_bits_per_layer(rounding_threshold_bits, len(hidden))
        coarse = [
            f"{layer.name} reads {layer.lookup_bits} of its {int(layer.bits.max())} bits"
            for layer, bits in zip(hidden, asked, strict=True)
            if bits is not None
            and layer.lookup_bits < bits
            and layer.lookup_bits <= COARSE_LOOKUP_BITS
        ]
        if coarse:
            warnings.warn(
                f"table lookups read almost nothing: {'; '.join(coarse)}. Each lookup drops "
                "the module__n_accum_bits - rounding_threshold_bits low bits training "
                f"dropped (module__n_accum_bits={self.module_.n_accum_bits}, "
                f"rounding_threshold_bits={rounding_threshold_bits!r}), and these layers' "
                "accumulators are narrower than module__n_accum_bits, so the network "
                "computes with a few buckets and predicts poorly: raise "
                "rounding_threshold_bits (None reads every bit) or lower module__n_accum_bits",
                stacklevel=4,
            )

    def _forget_fitted_model(self) -> None:
        vars(self).pop("integer_model_", None)
        vars(self).pop("fhe_circuit_", None)

    # ------------------------------------------------------------------ validation
    def _validate_training_call(self, X, y, sample_weight, fit_params, first, classes):
        """Validate one training call; a first call also records the data's description
        (features, labels or target statistics, ``n_outputs_``). On error every
        attribute is restored, so a refused call changes nothing."""
        saved = dict(vars(self))
        try:
            return self._validated_data(X, y, sample_weight, fit_params, first, classes)
        except BaseException:
            vars(self).clear()
            vars(self).update(saved)
            raise

    def _validated_data(self, X, y, sample_weight, fit_params, first, classes):
        self._check_settings()
        if not first:
            self._check_network_matches_parameters()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        X, y = validate_data(
            self,
            _to_numpy(X),
            _to_numpy(y),
            reset=first,
            dtype=np.float32,
            multi_output=True,
            y_numeric=False,
        )
        weight = None
        if sample_weight is not None:
            weight = _check_sample_weight(
                _to_numpy(sample_weight), X, dtype=np.float64, ensure_non_negative=True
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
        y, n_outputs = self._validate_targets(y, reset=first, classes=classes, sample_weight=weight)
        if first:
            self.n_outputs_ = n_outputs
            self._check_module_parameters()
        self._check_split_params(fit_params)
        if weight is not None:
            self._check_criterion_takes_weights()
        return _TrainingData(X, y, weight, fit_params)

    def _check_settings(self) -> None:
        if not isinstance(self.progress_bar, bool):
            raise ValueError(f"progress_bar must be True or False, got {self.progress_bar!r}")
        state = self.random_state
        if state is not None and (
            isinstance(state, bool) or not isinstance(state, numbers.Integral)
        ):
            raise ValueError(f"random_state must be None or an integer, got {state!r}")
        epochs = self.max_epochs
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
            # skorch trains nothing at 0 and the model would still be certified and fitted
            raise ValueError(f"max_epochs must be an integer >= 1, got {epochs!r}")
        size = self.batch_size
        if not (isinstance(size, str) and size == "auto") and (
            isinstance(size, bool)
            or not isinstance(size, numbers.Integral)
            or (size < 1 and size != -1)
        ):
            # else torch's sampler refuses it mid-fit, after the network was rebuilt
            raise ValueError(
                'batch_size must be "auto", an integer >= 1, or -1 (every row in one batch, '
                f"as in skorch), got {size!r}"
            )
        module_params = self.get_params_for("module")
        n_layers = module_params.get("n_layers", 3)
        if isinstance(n_layers, numbers.Integral) and n_layers >= 1:  # else the module refuses
            lookup = lookup_bits_per_layer(self.rounding_threshold_bits, n_layers - 1)
            self._check_table_sizes(module_params.get("n_accum_bits", 8), lookup)
        for name in vars(self):
            if name.startswith("callbacks__accumulator_pruning"):
                raise ValueError(
                    f"{name} cannot be set: the accumulator_pruning callback is what makes "
                    "the accumulator certificate hold"
                )

    def _check_table_sizes(self, n_accum_bits, lookup_bits: list) -> None:
        """Refuse, before training, a network whose integer model could need tables of
        more than ``2^MAX_LOOKUP_BITS`` entries per neuron: a certified accumulator has at
        most ``n_accum_bits`` bits, its table reads at most ``rounding_threshold_bits``."""
        if isinstance(n_accum_bits, bool) or not isinstance(n_accum_bits, numbers.Integral):
            return  # the module refuses it
        widest = max((min(n_accum_bits, bits or n_accum_bits) for bits in lookup_bits), default=0)
        if widest > MAX_LOOKUP_BITS:
            raise ValueError(
                f"module__n_accum_bits={n_accum_bits} with rounding_threshold_bits="
                f"{self.rounding_threshold_bits!r} gives table lookups of up to {widest} bits "
                f"(2^{widest} entries per neuron); the integer model's tables read at most "
                f"{MAX_LOOKUP_BITS} bits: set rounding_threshold_bits to at most {MAX_LOOKUP_BITS}"
            )

    def _check_module_parameters(self) -> None:
        """Build a throwaway network (the caller's torch RNG untouched) to validate the
        ``module__*`` parameters before a first training call changes anything."""
        try:
            with torch.random.fork_rng(devices=[]):
                SparseQuantNeuralNetwork(
                    input_dim=self.n_features_in_,
                    n_outputs=self.n_outputs_,
                    **self.get_params_for("module"),
                )
        except TypeError as error:
            raise ValueError(f"invalid module__ parameter: {error}") from None

    def _check_network_matches_parameters(self) -> None:
        """Refuse to continue training a network built with other ``module__*`` values."""
        built = self.module_.get_config()
        changed = [
            f"module__{name}={value!r} (the network has {built.get(name, 'no such parameter')!r})"
            for name, value in self.get_params_for("module").items()
            if name not in built or built[name] != value
        ]
        if changed:
            raise ValueError(
                "module parameters changed since the network was built: "
                f"{', '.join(changed)}; partial_fit, prune and fit with warm_start=True "
                "continue training that network: call fit (warm_start=False) to train a new "
                "one, or set the parameters back"
            )

    def _check_split_params(self, fit_params: dict) -> None:
        """Fit parameters other than ``sample_weight`` belong to ``train_split``."""
        if not fit_params:
            return
        try:
            if self.train_split is None:
                raise TypeError("train_split is None")
            inspect.signature(self.train_split).bind(None, None, **fit_params)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{type(self).__name__}.fit got the fit parameter(s) {sorted(fit_params)}: "
                "besides sample_weight, fit parameters go to train_split, which does not "
                f"take them ({error})"
            ) from None

    def _check_criterion_takes_weights(self) -> None:
        criterion = self.criterion
        takes = (
            "reduction" in inspect.signature(criterion).parameters
            if isinstance(criterion, type)
            else hasattr(criterion, "reduction")
        )
        if not takes:
            raise ValueError(
                f"sample_weight needs per-row losses: criterion {criterion!r} has no "
                "'reduction' argument, as torch.nn losses have"
            )

    def get_params(self, deep=True, **kwargs):
        """skorch's ``get_params``. While ``fit`` trains with ``batch_size="auto"``, the deep
        parameters also give the batch size in use as ``iterator_train__batch_size`` and
        ``iterator_valid__batch_size`` (unless set), so a callback that reads it from the
        net, as skorch's ``ProgressBar`` does for its total, gets ``batch_size_``, not
        ``"auto"``. Outside ``fit`` and with ``deep=False`` (``sklearn.base.clone``) the
        parameters are the ones set."""
        params = super().get_params(deep=deep, **kwargs)
        if deep and self._in_training_loop and self.batch_size == "auto":
            for prefix in ("iterator_train", "iterator_valid"):
                params.setdefault(f"{prefix}__batch_size", self.batch_size_)
        return params

    def get_params_for(self, prefix):
        """skorch's component parameters; ``batch_size="auto"`` resolves to ``batch_size_``."""
        params = super().get_params_for(prefix)
        if prefix in ("iterator_train", "iterator_valid") and self.batch_size == "auto":
            params.setdefault("batch_size", self.batch_size_)
        return params

    @contextmanager
    def _seeded(self):
        """Seed torch from ``random_state`` without disturbing the caller's RNG."""
        if self.random_state is None:
            yield
            return
        devices = [torch.device(self.device).index or 0] if "cuda" in str(self.device) else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(self.random_state))
            yield

    # ------------------------------------------------------------------ skorch's loop
    def get_iterator(self, dataset, training=False):
        """skorch's iterator, fetching each batch with one indexing of the arrays.

        torch's ``DataLoader`` reads a skorch ``Dataset`` one row at a time and stacks the
        rows, a Python call per row that costs more than the network's step on large data.
        Here the same sampler (``RandomSampler`` when ``shuffle``, drawing the same
        permutation from torch's RNG) is wrapped in a ``BatchSampler``, so each batch is
        one fancy index of ``X`` and ``y``: the same batches, in the same order, with the
        same values. ``ValidSplit``'s ``Subset`` parts are read the same way. A custom
        ``iterator_*``, ``dataset``, ``sampler``, ``batch_sampler`` or ``collate_fn`` gets
        skorch's iterator unchanged.
        """
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        custom = {"sampler", "batch_sampler", "collate_fn"} & kwargs.keys()
        rows = dataset.dataset if type(dataset) is Subset else dataset  # Subset takes lists
        if getattr(self, prefix) is not DataLoader or type(rows) is not Dataset or custom:
            return super().get_iterator(dataset, training=training)
        batch_size = kwargs.pop("batch_size", self.batch_size)
        if batch_size == -1:
            batch_size = len(dataset)
        if kwargs.pop("shuffle", False):
            sampler = RandomSampler(dataset, generator=kwargs.pop("generator", None))
        else:
            sampler = SequentialSampler(dataset)
        batches = BatchSampler(sampler, batch_size, drop_last=kwargs.pop("drop_last", False))
        return DataLoader(dataset, batch_size=None, sampler=batches, **kwargs)

    def infer(self, x, **fit_params):
        """The network's outputs for a batch. The network takes no other input: the
        weights of a weighted fit go to ``get_loss``, fit parameters to ``train_split``."""
        if isinstance(x, dict):
            x = x["X"]
        return self.module_(to_tensor(x, device=self.device))

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """skorch's loss; in a weighted fit, the mean of ``sample_weight`` times each
        row's loss (weights scaled to mean 1 over the rows passed to ``fit``)."""
        if not isinstance(X, dict):
            return super().get_loss(y_pred, y_true, X=X, training=training)
        weight = to_tensor(X["sample_weight"], device=self.device)
        criterion = self.criterion_
        reduction, criterion.reduction = criterion.reduction, "none"
        try:
            losses = super().get_loss(y_pred, y_true, X=X, training=training)
        finally:
            criterion.reduction = reduction
        return (weight * losses.reshape(len(weight), -1).mean(dim=1)).mean()

    def load_params(self, *args, **kwargs):
        """skorch's ``load_params``; the network takes the saved one's structure (pruning
        masks attached or not, hidden widths: ``SparseQuantNeuralNetwork.load_state_dict``).

        During ``fit`` (``Checkpoint``, ``LoadInitState``), training goes on from the
        loaded state. Outside ``fit``, the loaded network becomes the fitted model: its
        pruning is made permanent and the integer model rebuilt from it (also when the
        load fails partway, so the estimator still answers for the network it holds).

        Raises
        ------
        ValueError
            Outside ``fit``, if the loaded weights break this estimator's accumulator bound
            (parameters saved under another ``module__n_accum_bits``, or another weight
            scaling: ``SparseQuantNeuralNetwork.load_state_dict``); a fitted estimator then
            keeps its network, integer model and compiled circuit.
        """
        before = self._parameter_ids()
        kept = self._fitted_state()
        try:
            super().load_params(*args, **kwargs)
        finally:
            if self._parameter_ids() != before:  # layers rebuilt to the saved widths
                self.initialize_optimizer()
            if self.initialized_ and not self._in_training_loop:
                self._adopt_loaded_network(kept)

    def _fitted_state(self) -> tuple[dict, dict] | None:
        """A copy of the fitted network's state dict and the fitted attributes built from
        it, to go back to; None outside a fitted estimator or inside ``fit``."""
        if self._in_training_loop or not self.__sklearn_is_fitted__():
            return None
        built = {
            name: vars(self)[name]
            for name in ("integer_model_", "fhe_circuit_")
            if name in vars(self)
        }
        return copy.deepcopy(self.module_.state_dict()), built

    def _adopt_loaded_network(self, kept) -> None:
        """Make the loaded network the fitted model, or restore ``kept`` (``_fitted_state``)
        and raise where its weights break the accumulator bound. Where nothing was loaded
        (a refused state dict), the fitted model, its circuit included, stands."""
        if kept is not None and _same_state(self.module_.state_dict(), kept[0]):
            return
        self._forget_fitted_model()
        try:
            if self.module_.pruning_enabled:
                self.module_.make_pruning_permanent()
                self.initialize_optimizer()
            self._build_integer_model()
        except ValueError as error:
            if kept is None:
                raise
            state, built = kept
            self.module_.load_state_dict(state)
            self.initialize_optimizer()
            vars(self).update(built)
            raise ValueError(
                "the loaded parameters do not fit this estimator's network; nothing was "
                f"loaded, the fitted model is kept: {error}"
            ) from error

    def _parameter_ids(self) -> list[int]:
        module = getattr(self, "module_", None)
        return [] if module is None else [id(p) for p in module.parameters()]

    # ------------------------------------------------------------------ inference
    def _validate_predict_data(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, _to_numpy(X), reset=False, dtype=np.float32)

    @property
    def certificate_(self) -> AccumulatorCertificate:
        """The fitted network's accumulator certificate (DESIGN.md section 3)."""
        check_is_fitted(self)
        return self.integer_model_.certificate

    def accumulator_certificate(self, X=None) -> AccumulatorCertificate:
        """The certificate; with ``X``, also each layer's accumulator range seen on it."""
        if X is None:
            return self.certificate_
        X = self._validate_predict_data(X)
        return self.integer_model_.observed_certificate(X)

    def export_onnx(self, path, qonnx_domain: bool = False):
        """Write the network as QONNX (opset 14) to ``path``; see ``onnx_export``.

        The graph computes the network's outputs: a classifier's logits, a regressor's
        standardized targets (``predict`` is ``output * target_std_ + target_mean_``).
        """
        check_is_fitted(self)
        from concrete_qnn.onnx_export import export_onnx

        return export_onnx(self.module_, path, self.n_features_in_, qonnx_domain)

    def compile(self, X):
        """Compile the integer model into an FHE circuit (needs the ``fhe`` extra).

        ``X`` (n_samples, n_features) joins the compilation input set; the accumulator
        bit-widths come from the certificate, so every input is computed correctly.
        Returns ``self``; the circuit is ``fhe_circuit_``.
        """
        X = self._validate_predict_data(X)
        from concrete_qnn.fhe import FHECircuit

        self.fhe_circuit_ = FHECircuit(self.integer_model_, self.integer_model_.quantize_input(X))
        return self

    def _compiled_circuit(self):
        """``fhe_circuit_`` if it was compiled from the current fit, else RuntimeError."""
        circuit = getattr(self, "fhe_circuit_", None)
        if circuit is None or circuit.integer_model is not self.integer_model_:
            raise RuntimeError(
                f"{type(self).__name__} is not compiled for FHE: call compile(X) after fit"
            )
        return circuit

    def _outputs(self, X, fhe: str) -> np.ndarray:
        """Real outputs (n_samples, n_outputs) in the clear, simulated or encrypted."""
        check_fhe_mode(fhe)
        X = self._validate_predict_data(X)
        if fhe == "disable":
            return self.integer_model_.decision_outputs(X)
        circuit = self._compiled_circuit()
        codes = self.integer_model_.quantize_input(X)
        return self.integer_model_.dequantize_output(circuit.run(codes, fhe))

    def save_fhe(self, directory):
        """Write the deployment artifacts of the compiled model to a new ``directory``.

        ``directory/client`` (client specs, input quantizer, output head, feature names)
        goes to data owners (``concrete_qnn.deploy.FHEClient``); ``directory/server``
        (the compiled circuit, no key of any kind) to the server
        (``concrete_qnn.deploy.FHEServer``, ``concrete-qnn serve``). JSON and
        concrete-python's own formats only; see ``concrete_qnn.deploy.artifacts``.

        Returns
        -------
        Path
            ``directory``.

        Raises
        ------
        NotFittedError
            If the estimator is not fitted.
        RuntimeError
            If it is not compiled (``compile(X)``) since its last fit.
        ValueError
            If ``directory`` exists and is not an empty directory.
        """
        check_is_fitted(self)
        circuit = self._compiled_circuit()
        from concrete_qnn.deploy.artifacts import save_fhe

        return save_fhe(circuit, self.integer_model_.io, directory)

    def save(self, path) -> None:
        """Write the integer model to ``path`` (one .npz file; ``concrete_qnn.load`` reads it)."""
        check_is_fitted(self)
        self.integer_model_.save(path)

    # ------------------------------------------------------------------ pruning
    def prune(self, X, y, n_prune_neurons_percentage, sample_weight=None, **fit_params):
        """A new fitted estimator with that fraction of hidden neurons pruned, fine-tuned.

        The copy is trained ``max_epochs`` more epochs on ``X, y`` (``sample_weight`` and
        ``fit_params`` as in ``fit``) from the current weights; ``self`` is left untouched.

        Raises
        ------
        NotFittedError
            If the estimator is not fitted.
        ValueError
            If ``n_prune_neurons_percentage`` is outside [0, 1), the network was already
            pruned structurally, its ``module__*`` parameters changed since it was built,
            or the data, weights or fit parameters are invalid.
        """
        check_is_fitted(self)
        if not (
            isinstance(n_prune_neurons_percentage, numbers.Real)
            and 0.0 <= n_prune_neurons_percentage < 1.0
        ):
            raise ValueError(
                f"n_prune_neurons_percentage must be in [0, 1), got {n_prune_neurons_percentage!r}"
            )
        if self.module_.neurons_pruned:
            raise ValueError(
                "this model's hidden neurons were already pruned structurally "
                f"(n_prune_neurons_percentage={self.module_.n_prune_neurons_percentage}); "
                "prune the model it came from instead"
            )
        self._check_network_matches_parameters()
        pruned = copy.deepcopy(self)
        # Set directly: skorch's set_params would re-initialize the module.
        pruned.module_.n_prune_neurons_percentage = float(n_prune_neurons_percentage)
        vars(pruned)["module__n_prune_neurons_percentage"] = float(n_prune_neurons_percentage)
        pruned.partial_fit(X, y, sample_weight=sample_weight, **fit_params)
        return pruned

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        # A compiled circuit holds native objects that do not pickle: compile again.
        # A copy made during fit (Checkpoint's f_pickle) is not in the training loop.
        state = super().__getstate__()
        state.pop("fhe_circuit_", None)
        state.pop("_in_training_loop", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if getattr(self, "optimizer_", None) is not None and self.initialized_:
            # The module is rebuilt on unpickling: point the optimizer at its parameters.
            previous = self.optimizer_.state_dict()
            self.initialize_optimizer()
            self.optimizer_.load_state_dict(previous)


def _same_state(state: dict, other: dict) -> bool:
    """Whether two state dicts hold the same keys and equal tensors."""
    return state.keys() == other.keys() and all(
        torch.equal(state[key], other[key]) for key in state
    )


def _estimator_init(default_criterion):
    """The estimators' ``__init__``: every parameter explicit (scikit-learn and ``inspect``
    read the defaults), ``criterion`` defaulting per estimator."""

    def __init__(
        self,
        module__n_layers=3,
        module__n_hidden_neurons_multiplier=DEFAULT_HIDDEN_NEURONS_MULTIPLIER,
        module__n_w_bits=3,
        module__n_a_bits=3,
        module__n_accum_bits=8,
        module__n_prune_neurons_percentage=0.0,
        module__activation_function=torch.nn.ReLU,
        module__quant_narrow=False,
        module__quant_signed=True,
        module__accumulator_rule="l1_budget",
        module__n_hidden_neurons_min=DEFAULT_HIDDEN_NEURONS_MIN,
        module__n_input_bits="auto",
        module__weight_scaling="auto",
        *,
        criterion=default_criterion,
        optimizer=torch.optim.AdamW,
        lr=0.002,
        max_epochs=60,
        batch_size="auto",
        train_split=None,
        iterator_train__shuffle=True,
        optimizer__weight_decay=0.1,
        random_state=None,
        verbose=0,
        progress_bar=False,
        rounding_threshold_bits=DEFAULT_ROUNDING_THRESHOLD_BITS,
        **kwargs,
    ):
        module_params = {k: v for k, v in locals().items() if k.startswith("module__")}
        self._init_qnn(
            module_params,
            random_state,
            progress_bar,
            rounding_threshold_bits,
            dict(
                criterion=criterion,
                optimizer=optimizer,
                lr=lr,
                max_epochs=max_epochs,
                batch_size=batch_size,
                train_split=train_split,
                iterator_train__shuffle=iterator_train__shuffle,
                optimizer__weight_decay=optimizer__weight_decay,
                verbose=verbose,
                **kwargs,
            ),
        )

    return __init__


class QNNClassifier(_QNNEstimatorMixin, NeuralNetClassifier):
    """Classifier whose network runs within ``module__n_accum_bits`` accumulators.

    Parameters ``module__*`` are those of ``SparseQuantNeuralNetwork`` (``input_dim`` and
    ``n_outputs`` come from the data). Other keyword arguments are skorch's
    (``criterion__weight``, ``callbacks``, ``train_split``, ``warm_start``, ``device``,
    ``iterator_train__*``, ...). ``random_state`` seeds torch for bit-identical refits;
    ``progress_bar=True`` shows skorch's ``ProgressBar`` (the one in ``callbacks``, if
    there is one). ``rounding_threshold_bits`` (default 5; None
    for none, or one entry per hidden layer) is how many high bits of an ``n_accum_bits``
    accumulator each hidden layer's table lookup reads: the integer model drops the
    ``k = n_accum_bits - rounding_threshold_bits`` low bits (``floor(A / 2^k)``, as
    concrete-python's ``truncate_bit_pattern``; a layer certified narrower than the bound
    reads fewer bits, in the buckets training saw), in the clear and
    under FHE alike, which makes encrypted inference several times faster for a small loss
    of accuracy (Concrete ML's parameter of the same name). Training reads the hidden
    accumulators through the same rounding (``SparseQuantNeuralNetwork.rounded_lookups``),
    so the network learns around it. Hidden layers have ``features x
    module__n_hidden_neurons_multiplier`` neurons (default 2 here: the module's 4 doubles
    the encrypted lookups without gaining accuracy), at least
    ``module__n_hidden_neurons_min`` (default 64). ``module__accumulator_rule`` defaults
    to ``"l1_budget"`` here (the module's own default is the seed's ``"fan_in"``): on the
    benchmark protocol it wins on most datasets of both suites (README Results).
    ``module__n_input_bits`` defaults to ``"auto"`` here (the module's ``None`` keeps
    ``n_a_bits``): inputs get the finest codes the first layer's accumulator budget leaves
    room for (``accumulator.auto_input_bits``: 3 bits from 16 features on, 5 bits up to 7
    features at 3/3/8), which few-feature, curved problems need.
    ``module__weight_scaling`` defaults to ``"auto"`` here (the module's ``"max"`` keeps
    Brevitas' max-abs scale): below 8-bit bounds (``module__n_accum_bits <= 7``) each
    neuron's weight scale gives its largest weight a smaller code where that fits more
    inputs under the bound (``"budget_mse"``, ``concrete_qnn.weight_scaling``), and the
    inputs get the codes that leave room for four weights of code +1 per neuron (4 bits at
    6-bit bounds); at 6 bits that scored 0.9754 on breast_cancer where the max-abs scale
    scored 0.9508 (README's hyperparameter guide). Training
    defaults: AdamW (``lr=0.002``, ``optimizer__weight_decay=0.1``), 60 epochs with a cosine
    learning-rate schedule (an ``LRScheduler`` in ``callbacks`` replaces it),
    ``batch_size="auto"`` (see ``auto_batch_size``: 64 rows up to 10,000 rows, then at most
    157 and from 100,000 rows 50 steps an epoch, with the cosine schedule's peak ``lr``
    scaled to match), no validation split (skorch's ``ValidSplit`` and ``EarlyStopping`` add
    one).

    During ``fit``, skorch's callbacks see the problem the network is trained on: labels
    encoded as 0 .. n_classes-1, and ``predict``/``predict_proba`` answer for the network
    being trained, as skorch's own do (so validation scoring, ``EarlyStopping`` and
    ``Checkpoint`` work). After ``fit`` they answer with the labels of ``classes_``, from
    the integer model.

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str, when fitted on a DataFrame with string columns
    certificate_ : AccumulatorCertificate
    integer_model_ : IntegerModel, the pruned network as integers; predictions come from it
    batch_size_ : int or None
        The last training call's ``auto_batch_size`` (None unless ``batch_size="auto"``).
    learning_rate_factor_ : float
        The factor on ``lr`` that goes with it (``auto_learning_rate_factor``; 1.0 unless
        ``batch_size="auto"`` chose batches of more than 64 rows, from 10,001 rows on).
    """

    __init__ = _estimator_init(torch.nn.CrossEntropyLoss)

    @property
    def classes_(self) -> np.ndarray:
        return self.label_encoder_.classes_

    def _validate_targets(self, y, reset, classes=None, sample_weight=None):
        check_classification_targets(y)
        y = column_or_1d(y, warn=True)
        if reset:
            classes = self.classes if classes is None else classes
            labels = y if classes is None else np.asarray(classes)
            self.label_encoder_ = LabelEncoder().fit(labels)
            if len(self.classes_) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes in the data, "
                    f"but the data contains only one class: {self.classes_[0]!r}"
                )
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels not seen in the first fit: {unknown[:5]}")
        return self.label_encoder_.transform(y).astype(np.int64), len(self.classes_)

    def initialize_criterion(self):
        """The criterion, with ``criterion__weight`` accepted as a list or an array."""
        params = self.get_params_for("criterion")
        if params.get("weight") is not None:
            params["weight"] = torch.as_tensor(np.asarray(params["weight"], dtype=np.float32))
        self.criterion_ = self.criterion(**params)
        return self

    def _output_head(self) -> OutputHead:
        return OutputHead("classification", classes=self.classes_)

    def predict_proba(self, X, fhe: str = "disable") -> np.ndarray:
        """Class probabilities, float64 (n_samples, n_classes), from the integer model:
        in the clear (``fhe="disable"``), simulated (``"simulate"``) or encrypted
        (``"execute"``, after ``compile``). During ``fit``: skorch's, from the network
        being trained."""
        if self._in_training_loop:
            return NeuralNetClassifier.predict_proba(self, X)
        outputs = self._outputs(X, fhe)
        return self.integer_model_.probabilities(outputs)

    def predict(self, X, fhe: str = "disable") -> np.ndarray:
        """Labels of ``classes_`` (n_samples,) from the integer model; ``fhe`` as in
        ``predict_proba``. During ``fit``: skorch's encoded labels, from the network
        being trained."""
        if self._in_training_loop:
            return NeuralNetClassifier.predict(self, X)
        outputs = self._outputs(X, fhe)
        return self.integer_model_.predictions(outputs)


class QNNRegressor(_QNNEstimatorMixin, NeuralNetRegressor):
    """Regressor whose network runs within ``module__n_accum_bits`` accumulators.

    ``y`` may be 1-D (n_samples,) or 2-D (n_samples, n_targets), in any units: each
    target column is standardized for training (mean and standard deviation learned in
    the first training call, weighted by ``sample_weight``; a constant column keeps
    standard deviation 1), and the integer model turns outputs back into the target's
    units, in memory and in its saved file. ``predict`` returns the dimensionality of
    the fitted ``y``. During ``fit``, skorch's callbacks see the standardized targets
    and ``predict`` answers for the network being trained, in standardized units.
    Other parameters as ``QNNClassifier``.

    Attributes
    ----------
    target_mean_, target_std_ : float64 ndarray (n_targets,)
        The standardization of each target column, in the target's units.
    """

    __init__ = _estimator_init(torch.nn.MSELoss)

    def _validate_targets(self, y, reset, classes=None, sample_weight=None):
        y = np.asarray(y, dtype=np.float64)
        if reset:
            self.target_ndim_ = y.ndim
        elif y.ndim != self.target_ndim_:
            raise ValueError(f"y has {y.ndim} dimensions, the first fit had {self.target_ndim_}")
        y = y.reshape(len(y), -1)
        if reset:
            scaler = StandardScaler().fit(y, sample_weight=sample_weight)
            self.target_mean_, self.target_std_ = scaler.mean_, scaler.scale_
        elif y.shape[1] != len(self.target_mean_):
            raise ValueError(
                f"y has {y.shape[1]} target columns, the first fit had {len(self.target_mean_)}"
            )
        standardized = (y - self.target_mean_) / self.target_std_
        return standardized.astype(np.float32), y.shape[1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    @property
    def predict_proba(self):
        """Not available: a regressor has no class probabilities."""
        raise AttributeError("QNNRegressor has no predict_proba; use predict")

    def _output_head(self) -> OutputHead:
        return OutputHead(
            "regression",
            target_ndim=self.target_ndim_,
            target_mean=self.target_mean_,
            target_std=self.target_std_,
        )

    def predict(self, X, fhe: str = "disable") -> np.ndarray:
        """float64 predictions in the target's units from the integer model,
        (n_samples,) when fitted on 1-D y, else (n_samples, n_targets); ``fhe`` as in
        ``QNNClassifier.predict_proba``. During ``fit``: the network being trained,
        float32 (n_samples, n_targets) in standardized units."""
        if self._in_training_loop:
            return NeuralNet.predict_proba(self, X)
        outputs = self._outputs(X, fhe)
        return self.integer_model_.predictions(outputs)


def auto_batch_size(n_samples: int) -> int:
    """``batch_size="auto"``: rows per training step for ``n_samples`` training rows.

    Up to ``AUTO_BATCH_ROWS`` (10,000) rows: 64, fewer for small data so that an epoch has
    at least about 5 steps (never under 16); measured on wine (142 training rows, 5-fold
    mean at the defaults), batch 64 gives 0.9605, batch 28 gives 0.9662. Above, batches grow
    so that an epoch takes ``157 * sqrt(10,000 / n_samples)`` steps, never fewer than
    ``AUTO_MIN_STEPS`` (50): 64 rows at 10,000 (157 steps), about 2,000 at 100,000 and 20,000
    at 1,000,000 (50 steps). Each step costs Brevitas' per-step overhead whatever its size
    (DESIGN.md section 5b), so a fit's steps stay bounded; see ``auto_learning_rate_factor``
    for the learning rate that goes with larger batches. Measured on 100,000 x 20
    ``make_classification`` rows (held-out accuracy, defaults): batch 640 (157 steps) 0.860
    in 240 s, batch 2,000 (50 steps) 0.867 in 125 s, both with the scaled learning rate.
    """
    if n_samples <= AUTO_BATCH_ROWS:
        return min(64, max(16, n_samples // 5))
    steps = max(AUTO_MIN_STEPS, 157 * math.sqrt(AUTO_BATCH_ROWS / n_samples))
    return math.ceil(n_samples / steps)


def auto_learning_rate_factor(batch_size: int) -> float:
    """Factor on ``lr`` for a ``batch_size="auto"`` batch of ``batch_size`` rows.

    ``sqrt(batch_size / 64)``, between 1 and ``sqrt(32)`` (5.66, reached at 2,048 rows): 1,
    today's learning rate, for every batch of 64 rows or fewer, hence for every fit on up to
    10,000 rows. The square-root rule keeps Adam's step noise about constant as batches
    grow; the cap keeps the largest learning rate measured. Measured on 100,000 x 20
    ``make_classification`` rows with batch 2,000: factor 1 gives held-out accuracy 0.852,
    factor 5.5 gives 0.867.
    """
    return math.sqrt(min(max(batch_size, 64), AUTO_MAX_LR_BATCH) / 64)


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


def _to_numpy(data):
    """Accept torch tensors wherever numpy arrays are accepted."""
    if isinstance(data, torch.Tensor):
        return data.detach().cpu().numpy()
    return data
