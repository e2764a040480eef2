"""skorch callbacks the estimators add by default: accumulator pruning, cosine learning rate
(and from ``progress``: the progress bar, the notice of a long fit).

``default_callbacks`` and ``pruning_last`` are how the estimators place them among skorch's
defaults and the user's ``callbacks``.
"""

from __future__ import annotations

import math

from skorch.callbacks import Callback, LRScheduler, ProgressBar

from concrete_qnn.training.progress import EpochProgressBar, LongFitNotice, training_epochs

PRUNING = "accumulator_pruning"


class AccumulatorPruning(Callback):
    """Prune ``net.module_`` so that its accumulators fit ``n_accum_bits``.

    ``on_train_begin``: ``enable_pruning()`` (fan-in masks, structured pruning).
    ``on_train_end``: ``make_pruning_permanent()``, which checks the certificate and
    raises if it cannot hold; the optimizer is then rebuilt for the folded weights, so
    ``partial_fit`` keeps working. The estimators put this callback after every other
    one, so a callback that restores weights at the end of training (``EarlyStopping``
    with ``load_best``) acts before the pruning is made permanent.
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        net.module_.enable_pruning()

    def on_train_end(self, net, X=None, y=None, **kwargs):
        net.module_.make_pruning_permanent()
        net.initialize_optimizer()


class CosineLearningRate(Callback):
    """Anneal the learning rate from its initial value to 0 along a half cosine.

    At the start of epoch ``e`` (0-based) of a fit of ``max_epochs`` epochs every parameter
    group gets ``lr_0 * (1 + cos(pi * e / max_epochs)) / 2``; the value is recorded in
    ``history`` as ``lr``. ``lr_0`` is the group's learning rate at the start of training
    times the net's ``learning_rate_factor_`` if it has one (the estimators set it from
    ``batch_size="auto"``: 1 up to 10,000 rows, larger for the larger batches of large
    data; see ``training.batching.auto_learning_rate_factor``). Measured with the 3/3/8 defaults
    (5-fold means): synthetic 0.8615 -> 0.879, diabetes R^2 0.4685 -> 0.4957.
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        factor = getattr(net, "learning_rate_factor_", 1.0)
        self.initial_lrs_ = [group["lr"] * factor for group in net.optimizer_.param_groups]
        self.epoch_ = 0

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        factor = (1.0 + math.cos(math.pi * self.epoch_ / training_epochs(net))) / 2.0
        for group, initial in zip(net.optimizer_.param_groups, self.initial_lrs_, strict=True):
            group["lr"] = initial * factor
        net.history.record("lr", self.initial_lrs_[0] * factor)

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        self.epoch_ += 1


def default_callbacks(skorch_defaults: list, callbacks, progress_bar: bool) -> list:
    """The estimators' default callbacks: skorch's, an ``EpochProgressBar`` when
    ``progress_bar``, the notice of a long fit, the cosine schedule and the accumulator
    pruning.

    A callback of the same kind in the user's ``callbacks`` replaces the default: one bar, and
    the user's learning-rate schedule (an ``LRScheduler``) instead of one fighting the default
    cosine schedule.
    """
    progress = [("progress_bar", EpochProgressBar())]
    user_bar = _has_callback(callbacks, ProgressBar)
    schedule = [("lr_schedule", CosineLearningRate())]
    return [
        *skorch_defaults,
        *(progress if progress_bar is True and not user_bar else []),
        ("long_fit_notice", LongFitNotice()),
        *([] if _has_callback(callbacks, LRScheduler, CosineLearningRate) else schedule),
        (PRUNING, AccumulatorPruning()),
    ]


def pruning_last(callbacks_: list) -> list:
    """skorch's initialized ``(name, callback)`` pairs with the pruning moved after every other
    one (see ``AccumulatorPruning``)."""
    pruning = [item for item in callbacks_ if item[0] == PRUNING]
    return [item for item in callbacks_ if item[0] != PRUNING] + pruning


def _has_callback(callbacks, *kinds: type) -> bool:
    """True if ``callbacks`` holds a callback (class or instance) of one of ``kinds``."""
    for item in callbacks or []:
        callback = item[1] if isinstance(item, (tuple, list)) else item
        kind = callback if isinstance(callback, type) else type(callback)
        if issubclass(kind, kinds):
            return True
    return False
