"""The errors concrete-qnn raises, by kind, so that a caller can catch one kind, and its
one warning of its own (``InputRangeWarning``).

Each is a subclass of the built-in exception the package raised before these classes
existed (``ValueError`` or ``RuntimeError``), so ``except ValueError`` keeps working; all of
them are also ``QNNError``, so ``except QNNError`` catches every error this package raises
on purpose. scikit-learn's ``NotFittedError`` stays the error of an unfitted estimator.
"""

from __future__ import annotations

__all__ = [
    "AccumulatorBoundError",
    "InputRangeWarning",
    "InvalidParameterError",
    "ModelFileError",
    "NotCompiledError",
    "QNNError",
]


class QNNError(Exception):
    """Base of every error that concrete-qnn raises on purpose."""


class InvalidParameterError(QNNError, ValueError):
    """A hyperparameter or argument outside its allowed values (the message names it and
    the allowed range)."""


class AccumulatorBoundError(QNNError, ValueError):
    """Integer weights whose certified accumulator is wider than ``n_accum_bits``: a
    network, parameters or a model that would break the proven bound."""


class ModelFileError(QNNError, ValueError):
    """A model file or deployment artifact that is missing, damaged, edited, of another
    format version, or whose weights break the bound it claims."""


class NotCompiledError(QNNError, RuntimeError):
    """An encrypted operation asked of a model, client or server without what it needs:
    a model not compiled since its last fit, or a client without keys."""


class InputRangeWarning(UserWarning):
    """Rows whose values lie mostly far outside the input quantizer's range, so that they
    are clipped: most often raw rows given to a model trained on preprocessed (scaled) ones
    (``integer.io.FAR_OUT_FRACTION`` says when it is issued)."""
