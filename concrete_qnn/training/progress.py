"""What a fit says while it runs: the progress bar's epoch counter, and one line at the start
of a fit expected to take more than a minute; both count ``training_epochs``, the epochs the
training call runs (``max_epochs="auto"`` resolved).

``EpochProgressBar`` is skorch's ``ProgressBar`` (one bar per epoch, restarted each epoch)
with ``epoch k/N`` in front, so the restarts count towards an end. ``LongFitNotice`` times the
first steps of a fit and, where the whole fit would take more than ``LONG_FIT_SECONDS``, logs
one line through ``logging`` (logger ``concrete_qnn.training.progress``, level WARNING):
rows, steps and the estimate. Logging, not ``warnings.warn``: a long fit is nothing to fix,
and a warning would become an error under ``-W error`` or a test suite's filters; WARNING
is the level Python prints to stderr where the application configured no logging, so
``verbose=0`` still gets the line. Silence it with
``logging.getLogger("concrete_qnn").setLevel(logging.ERROR)``. A fit that shows a progress
bar gets no line: the bar already says how far it is.
"""

from __future__ import annotations

import logging
import math
import time

from skorch.callbacks import Callback, ProgressBar

from concrete_qnn.training.batching import ITERATORS


def training_epochs(net) -> int:
    """The epochs of the net's training call: the estimators' ``max_epochs_`` (what
    ``max_epochs="auto"`` resolved to), else skorch's ``max_epochs``."""
    return getattr(net, "max_epochs_", None) or net.max_epochs


# A fit expected to take longer says so at its start.
LONG_FIT_SECONDS = 60.0
# The estimate is made after this long, or at the end of the first epoch if sooner; the first
# step's setup (Brevitas builds its quantizers' state) is then a small part of what is timed.
MEASURE_SECONDS = 2.0

logger = logging.getLogger(__name__)


class EpochProgressBar(ProgressBar):
    """skorch's ``ProgressBar`` with the epoch, ``epoch k/N``, counted within each training
    call (``N``: ``max_epochs``)."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.epoch_ = 0

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train, dataset_valid, **kwargs)
        self.epoch_ += 1
        self.pbar_.set_description(f"epoch {self.epoch_}/{training_epochs(net)}")


class LongFitNotice(Callback):
    """Log one line at the start of a fit expected to take more than ``seconds``.

    The estimate is the time per step over the first ``MEASURE_SECONDS`` (or the first
    epoch, if shorter) times the steps of ``max_epochs`` epochs (training and validation
    batches); it leaves out early stopping and the pruning at the end. Nothing is logged when
    a ``ProgressBar`` is among the net's callbacks.
    """

    def __init__(self, seconds: float = LONG_FIT_SECONDS):
        self.seconds = seconds

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        shown = any(isinstance(callback, ProgressBar) for _, callback in net.callbacks_)
        self.start_ = None if shown else time.perf_counter()
        self.steps_done_ = 0

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        if self.start_ is not None and self.steps_done_ == 0:
            self.rows_ = len(dataset_train)
            self.steps_per_epoch_ = _batches(net, dataset_train, 0) + _batches(
                net, dataset_valid, 1
            )

    def on_batch_end(self, net, **kwargs):
        if self.start_ is None:
            return
        self.steps_done_ += 1
        elapsed = time.perf_counter() - self.start_
        if elapsed < MEASURE_SECONDS and self.steps_done_ < self.steps_per_epoch_:
            return
        self.start_ = None  # one estimate per training call
        steps = self.steps_per_epoch_ * training_epochs(net)
        estimate = elapsed / self.steps_done_ * steps
        if estimate > self.seconds:
            logger.warning(
                f"concrete_qnn: this fit is expected to take about {_duration(estimate)}: "
                f"{training_epochs(net)} epochs of {self.steps_per_epoch_:,} steps on "
                f"{self.rows_:,} rows ({steps:,} steps, {elapsed / self.steps_done_:.2f} s each "
                "over the first "
                f"{self.steps_done_}); progress_bar=True shows its progress"
            )


def _batches(net, dataset, iterator: int) -> int:
    """Batches of ``dataset`` per epoch (0 for no dataset) with the net's batch size."""
    if dataset is None:
        return 0
    size = net.get_params_for(ITERATORS[iterator]).get("batch_size", net.batch_size)
    return 1 if size == -1 else math.ceil(len(dataset) / size)


def _duration(seconds: float) -> str:
    """``seconds`` in words: "12 minutes", "1.5 hours"."""
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"
