"""skorch callback that runs the accumulator pruning around training."""

from __future__ import annotations

from skorch.callbacks import Callback


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
