"""Batches: ``batch_size="auto"``, its learning-rate factor, and one indexing per batch.

``auto_batch_size`` and ``auto_learning_rate_factor`` are the estimators' default batching
(measured on this package's benchmarks); ``get_iterator`` is skorch's ``get_iterator`` built
on torch's ``BatchSampler``; ``TrainingData`` is one training call's validated data.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from skorch import NeuralNet
from skorch.dataset import Dataset
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, Subset

# batch_size="auto": today's batches up to this many rows, then bounded steps per epoch.
AUTO_BATCH_ROWS = 10_000
AUTO_MIN_STEPS = 50
# Batch size beyond which the auto learning-rate factor stops growing.
AUTO_MAX_LR_BATCH = 2048
# skorch's iterators, whose batch size ``batch_size="auto"`` resolves.
ITERATORS = ("iterator_train", "iterator_valid")


class TrainingData(NamedTuple):
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

    @property
    def inputs(self):
        """What skorch's ``fit`` takes as ``X``: the array, or in a weighted fit the dict
        ``{"X": X, "sample_weight": sample_weight}`` (skorch indexes both by row)."""
        if self.sample_weight is None:
            return self.X
        return {"X": self.X, "sample_weight": self.sample_weight}


def auto_batch_size(n_samples: int) -> int:
    """``batch_size="auto"``: rows per training step for ``n_samples`` training rows.

    Up to ``AUTO_BATCH_ROWS`` (10,000) rows: 64, fewer for small data so that an epoch has
    at least about 5 steps (never under 16); measured on wine (142 training rows, 5-fold
    mean at the defaults), batch 64 gives 0.9605, batch 28 gives 0.9662. Above, batches grow
    so that an epoch takes ``157 * sqrt(10,000 / n_samples)`` steps, never fewer than
    ``AUTO_MIN_STEPS`` (50): 64 rows at 10,000 (157 steps), about 2,000 at 100,000 and 20,000
    at 1,000,000 (50 steps). Each step costs Brevitas' per-step overhead whatever its size,
    so a fit's steps stay bounded; see ``auto_learning_rate_factor`` for the learning rate
    that goes with larger batches. Measured on 100,000 x 20 ``make_classification`` rows
    (held-out accuracy, defaults): batch 640 (157 steps) 0.860 in 240 s, batch 2,000
    (50 steps) 0.867 in 125 s, both with the scaled learning rate.

    Parameters
    ----------
    n_samples : int
        Training rows (those of positive weight).

    Returns
    -------
    int
        Rows per batch, at least 16.
    """
    if n_samples <= AUTO_BATCH_ROWS:
        return min(64, max(16, n_samples // 5))
    steps = max(AUTO_MIN_STEPS, 157 * math.sqrt(AUTO_BATCH_ROWS / n_samples))
    return math.ceil(n_samples / steps)


def auto_learning_rate_factor(batch_size: int) -> float:
    """Factor on ``lr`` for a ``batch_size="auto"`` batch of ``batch_size`` rows.

    ``sqrt(batch_size / 64)``, between 1 and ``sqrt(32)`` (5.66, reached at 2,048 rows): 1,
    today's learning rate, for every batch of 64 rows or fewer, hence for every fit on up to
    10,000 rows. The square-root rule (Krizhevsky, "One weird trick for parallelizing
    convolutional neural networks", 2014) keeps Adam's step noise about constant as batches
    grow; the cap keeps the largest learning rate measured. Measured on 100,000 x 20
    ``make_classification`` rows with batch 2,000: factor 1 gives held-out accuracy 0.852,
    factor 5.5 gives 0.867.

    Parameters
    ----------
    batch_size : int
        Rows per batch.

    Returns
    -------
    float
        The factor, in [1, sqrt(32)].
    """
    return math.sqrt(min(max(batch_size, 64), AUTO_MAX_LR_BATCH) / 64)


def auto_batching(batch_size, n_rows: int) -> tuple[int | None, float]:
    """``(batch_size_, learning_rate_factor_)`` of a training call on ``n_rows`` rows: the
    ``auto_batch_size`` and its factor for ``batch_size="auto"``, else ``(None, 1.0)``."""
    if batch_size != "auto":
        return None, 1.0
    size = auto_batch_size(n_rows)
    return size, auto_learning_rate_factor(size)


def get_iterator(net: NeuralNet, dataset, training: bool = False):
    """skorch's ``NeuralNet.get_iterator``, fetching each batch with one indexing of the arrays.

    torch's ``DataLoader`` reads a skorch ``Dataset`` one row at a time and stacks the rows,
    a Python call per row that costs more than the network's step on large data. Here the
    same sampler (``RandomSampler`` when ``shuffle``, drawing the same permutation from
    torch's RNG) is wrapped in torch's ``BatchSampler``, so each batch is one fancy index of
    ``X`` and ``y``: the same batches, in the same order, with the same values.
    ``ValidSplit``'s ``Subset`` parts are read the same way. A custom ``iterator_*``,
    ``dataset``, ``sampler``, ``batch_sampler`` or ``collate_fn`` gets skorch's iterator
    unchanged. Any skorch net can use it as its ``get_iterator`` method.

    Parameters
    ----------
    net : skorch.NeuralNet
    dataset : skorch.dataset.Dataset or torch.utils.data.Subset of one
    training : bool
        Whether to read ``iterator_train__*`` (else ``iterator_valid__*``).

    Returns
    -------
    torch.utils.data.DataLoader
    """
    prefix = ITERATORS[0] if training else ITERATORS[1]
    kwargs = net.get_params_for(prefix)
    custom = {"sampler", "batch_sampler", "collate_fn"} & kwargs.keys()
    rows = dataset.dataset if type(dataset) is Subset else dataset  # Subset takes lists
    if getattr(net, prefix) is not DataLoader or type(rows) is not Dataset or custom:
        return NeuralNet.get_iterator(net, dataset, training=training)
    batch_size = kwargs.pop("batch_size", net.batch_size)
    if batch_size == -1:
        batch_size = len(dataset)
    if kwargs.pop("shuffle", False):
        sampler = RandomSampler(dataset, generator=kwargs.pop("generator", None))
    else:
        sampler = SequentialSampler(dataset)
    batches = BatchSampler(sampler, batch_size, drop_last=kwargs.pop("drop_last", False))
    return DataLoader(dataset, batch_size=None, sampler=batches, **kwargs)
