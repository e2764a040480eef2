"""The torch side: the network, its quantizers, accumulator rules, weight masks and learned
lookups.

Names are imported on first use (``concrete_qnn.config`` reads ``nn.rules`` and
``nn.quantizers`` while this package is being imported, so nothing is imported eagerly here).
"""

import importlib

_NAMES = {
    "SparseQuantNeuralNetwork": "concrete_qnn.nn.network",
    "ACCUMULATOR_RULES": "concrete_qnn.nn.rules",
    "AccumulatorRule": "concrete_qnn.nn.rules",
    "A2QRule": "concrete_qnn.nn.rules",
    "FanInRule": "concrete_qnn.nn.rules",
    "L1BudgetRule": "concrete_qnn.nn.rules",
    "FanInMask": "concrete_qnn.nn.masks",
    "L1BallMask": "concrete_qnn.nn.masks",
    "L1BudgetMask": "concrete_qnn.nn.masks",
    "NeuronMask": "concrete_qnn.nn.masks",
    "LearnedLookup": "concrete_qnn.nn.lookups",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'concrete_qnn.nn' has no attribute {name!r}")
