"""The skorch plumbing both estimators share: ``QNNEstimatorBase``.

It re-plumbs skorch's ``NeuralNet`` around ``SparseQuantNeuralNetwork``: parameters,
callbacks, initialization, the training call, batches, weighted losses, ``load_params``
and pickling. Validation, batching, the fitted model's lifecycle and the export methods are
delegated to ``validation``, ``concrete_qnn.training``, ``lifecycle`` and ``export``.

``QNNEstimatorBase`` is longer than this package's 250-line guide for a class (about 300
lines): it is one override surface, the 18 ``NeuralNet`` methods skorch calls on itself, and
more than half of it is the docstrings of the public ones (``fit``, ``partial_fit``,
``set_params``, ``get_params``, ``initialize``, ``load_params``).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from types import MappingProxyType

import torch
from sklearn.exceptions import NotFittedError
from skorch import NeuralNet
from skorch.utils import to_tensor

from concrete_qnn.estimators import lifecycle, validation
from concrete_qnn.estimators.parameters import resolved_max_epochs
from concrete_qnn.nn.network import SparseQuantNeuralNetwork
from concrete_qnn.training import batching
from concrete_qnn.training.callbacks import default_callbacks, pruning_last


class QNNEstimatorBase:
    """What both estimators change in skorch's ``NeuralNet``.

    Subclasses implement ``_validate_targets(y, reset, classes, sample_weight) ->
    (y_for_torch, n_outputs)`` (``classes``: ``partial_fit``'s argument, else None) and
    ``_output_head()``.

    Two rules keep every method answering for one and the same model:

    - ``integer_model_`` exists exactly when ``module_`` is the pruned network it was
      built from (``lifecycle``). A training call drops it before training and rebuilds it
      after; ``set_params`` stores ``module__*`` parameters for the next ``fit`` without
      rebuilding the fitted network; ``load_params`` outside ``fit`` rebuilds it.
    - A training call validates everything (``validation``: data, weights, parameters,
      and for calls that continue the fitted network, that its ``module__*`` parameters are
      unchanged) before it changes any state; a call that raises, refused or failing later
      (``lifecycle.restored_on_error``), leaves every attribute as it was.

    skorch's ``compile`` flag (torch.compile) is taken out, since ``compile(X)`` is the FHE
    method: ``__init__`` refuses a true value and removes the attribute, ``set_params``
    refuses it, and ``torch_compile`` (which skorch calls on the criterion) does nothing.
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
        validation.refuse_skorch_compile(self, kwargs.pop("compile", False))
        validation.refuse_data_parameters(self, kwargs)
        super().__init__(SparseQuantNeuralNetwork, **module_params, **kwargs)
        # scikit-learn: __init__ sets the parameters only (the three class attributes above);
        # skorch's compile flag would hide the compile method.
        for name in ("history_", "initialized_", "virtual_params_", "compile"):
            del self.__dict__[name]
        self.random_state = random_state
        self.progress_bar = progress_bar
        self.rounding_threshold_bits = rounding_threshold_bits

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
        InvalidParameterError
            For ``module``, ``module__input_dim``, ``module__n_outputs`` (set from the
            data) and skorch's ``compile`` (this class's ``compile`` is the FHE method).
        ValueError
            For an invalid ``rounding_threshold_bits`` on a fitted estimator. Nothing is
            set on any error.
        """
        validation.refuse_data_parameters(self, params)
        validation.refuse_skorch_compile(
            self, any(name == "compile" or name.startswith("compile__") for name in params)
        )
        rounded = None
        if "rounding_threshold_bits" in params and self.__sklearn_is_fitted__():
            rounded = lifecycle.integer_model(self, params["rounding_threshold_bits"])
        module_params = {name: value for name, value in params.items() if name[:8] == "module__"}
        super().set_params(**{name: params[name] for name in params.keys() - module_params})
        # skorch's set_params would rebuild the fitted network: store them as skorch would.
        vars(self).update(module_params)
        if rounded is not None:
            self.integer_model_ = rounded
            lifecycle.forget_fitted_model(self, ["fhe_circuit_"])
        if self.initialized_:  # skorch would keep these three until the next initialize
            if "callbacks" in params:
                self._initialize_callbacks()
            if "criterion" in params:
                self._initialize_criterion()
            if "criterion" in params or "optimizer" in params:
                self._initialize_optimizer()
        return self

    def get_params(self, deep=True, **kwargs):
        """skorch's ``get_params``. While ``fit`` trains with ``batch_size="auto"``, the deep
        parameters also give the batch size in use as ``iterator_train__batch_size`` and
        ``iterator_valid__batch_size`` (unless set), so a callback that reads it from the
        net, as skorch's ``ProgressBar`` does for its total, gets ``batch_size_``, not
        ``"auto"``. Outside ``fit`` and with ``deep=False`` (``sklearn.base.clone``) the
        parameters are the ones set."""
        params = super().get_params(deep=deep, **kwargs)
        if deep and self._in_training_loop and self.batch_size == "auto":
            for prefix in batching.ITERATORS:
                params.setdefault(f"{prefix}__batch_size", self.batch_size_)
        return params

    def get_params_for(self, prefix):
        """skorch's component parameters; ``batch_size="auto"`` resolves to ``batch_size_``."""
        params = super().get_params_for(prefix)
        if prefix in batching.ITERATORS and self.batch_size == "auto":
            params.setdefault("batch_size", self.batch_size_)
        return params

    # ------------------------------------------------------------------ initialization
    @property
    def _default_callbacks(self):
        return default_callbacks(super()._default_callbacks, self.callbacks, self.progress_bar)

    def initialize_callbacks(self):
        """skorch's callbacks, with the pruning moved after every other one."""
        super().initialize_callbacks()
        self.callbacks_ = pruning_last(self.callbacks_)
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
        lifecycle.forget_fitted_model(self)
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
        InvalidParameterError
            Before any state changes: invalid parameters or fit parameters (a
            ``ValueError``).
        ValueError
            Before any state changes: invalid data or weights; with ``warm_start``, data
            or ``module__*`` parameters that do not match the fitted network.
        AccumulatorBoundError
            If pruning cannot make the certificate hold (raised by the network).

        Whatever it raises, the estimator is left as it was: a fitted one keeps its network,
        integer model, certificate and compiled circuit; an unfitted one stays unfitted. A
        ``KeyboardInterrupt`` during the epochs (Ctrl-C, skorch's ``EarlyStopping``) ends
        training as in skorch: the network trained so far is pruned, certified and fitted.
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
        with lifecycle.restored_on_error(self):
            data = validation.training_data(self, X, y, sample_weight, fit_params, first, classes)
            with self._seeded():
                if first:
                    self.initialize()
                self._train(data)
        return self

    def _train(self, data: batching.TrainingData) -> None:
        """skorch's training loop (pruning runs in its callback), then the integer model."""
        lifecycle.forget_fitted_model(self)
        self.batch_size_, self.learning_rate_factor_ = batching.auto_batching(
            self.batch_size, len(data.X)
        )
        self.max_epochs_ = resolved_max_epochs(
            self.max_epochs, self.module_.config.learned_lookups_used
        )
        rounding = self.module_.rounded_lookups(self.rounding_threshold_bits)
        with self._training_loop(), rounding:
            NeuralNet.partial_fit(
                self, data.inputs, data.y, epochs=self.max_epochs_, **data.split_params
            )
        lifecycle.build_integer_model(self)

    @contextmanager
    def _training_loop(self):
        """Mark skorch's training loop: ``predict`` then answers for the network being
        trained, as skorch's scoring callbacks expect (``export.FittedModelMethods``)."""
        self._in_training_loop = True
        try:
            yield
        finally:
            del self._in_training_loop

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
    get_iterator = batching.get_iterator

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
        AccumulatorBoundError
            Outside ``fit``, if the loaded weights break this estimator's accumulator bound
            (parameters saved under another ``module__n_accum_bits``, or another weight
            scaling: ``SparseQuantNeuralNetwork.load_state_dict``); a fitted estimator then
            keeps its network, integer model and compiled circuit. A ``ValueError``.
        """
        lifecycle.load_params(self, functools.partial(super().load_params, *args, **kwargs))

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        # A compiled circuit holds native objects that do not pickle: None marks its place,
        # so that unpickling warns to compile again. A copy made during fit (Checkpoint's
        # f_pickle) is not in the training loop.
        state = super().__getstate__()
        if "fhe_circuit_" in state:
            state["fhe_circuit_"] = None
        state.pop("_in_training_loop", None)
        return state

    def __setstate__(self, state):
        if "fhe_circuit_" in state:
            del state["fhe_circuit_"]
            lifecycle.warn_circuit_dropped(self)
        super().__setstate__(state)
        if getattr(self, "optimizer_", None) is not None and self.initialized_:
            # The module is rebuilt on unpickling: point the optimizer at its parameters.
            previous = self.optimizer_.state_dict()
            self.initialize_optimizer()
            self.optimizer_.load_state_dict(previous)
