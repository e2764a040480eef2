"""A fitted scikit-learn ``Pipeline``'s preprocessing as data, so that the client applies it;
``compile`` and ``save_fhe`` for a model or such a pipeline.

The steps before the estimator that a client can apply from data alone: ``StandardScaler``,
``MinMaxScaler`` (``clip=False``), ``MaxAbsScaler``, ``RobustScaler``, ``"passthrough"`` (or
``None``, or a ``FunctionTransformer`` without a function, what ``ColumnTransformer`` makes of
``"passthrough"``), and ``ColumnTransformer``s and ``Pipeline``s of them, with columns passed
through, dropped or reordered and positive ``transformer_weights``. Each is a per-feature
affine map ``x -> (x - offset) / scale`` of selected columns, and so is their composition
(``InputMap``): the client artifact stores it as the model's standardization
(``ModelIO.feature_mean`` = offset, ``feature_std`` = scale) and column selection
(``ModelIO.columns``). The composed map gives the steps' result up to float64 rounding (about
1e-16 relative), far below the float32 that the input quantizer reads. Any other step (PCA,
PolynomialFeatures, a FunctionTransformer with a function, a subclass of a scaler, an
unfitted step) is refused with an ``InvalidParameterError`` that names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    RobustScaler,
    StandardScaler,
)
from sklearn.utils.validation import check_is_fitted

from concrete_qnn.deploy import artifacts
from concrete_qnn.exceptions import InvalidParameterError
from concrete_qnn.integer.io import ModelIO

# Each supported scaler (its exact type: a subclass may transform otherwise) as
# (offset, scale), each a number or an array (n_features,): its transform is
# (x - offset) / scale.
AFFINE_STEPS = {
    StandardScaler: lambda step: (
        step.mean_ if step.with_mean else 0.0,
        step.scale_ if step.with_std else 1.0,
    ),
    # x * scale_ + min_
    MinMaxScaler: lambda step: (-step.min_ / step.scale_, 1.0 / step.scale_),
    MaxAbsScaler: lambda step: (0.0, step.scale_),
    RobustScaler: lambda step: (
        step.center_ if step.with_centering else 0.0,
        step.scale_ if step.with_scaling else 1.0,
    ),
}
SUPPORTED = (
    "StandardScaler, MinMaxScaler (clip=False), MaxAbsScaler, RobustScaler, 'passthrough', "
    "and ColumnTransformers and Pipelines of them"
)


@dataclass(frozen=True)
class InputMap:
    """Feature ``j`` is ``(X[:, columns[j]] - offset[j]) / scale[j]`` for an ``X`` of
    ``n_columns`` columns (``columns`` int64, ``offset`` and ``scale`` float64, all of
    shape (n_features,))."""

    columns: np.ndarray
    offset: np.ndarray
    scale: np.ndarray
    n_columns: int

    @classmethod
    def per_feature(cls, n_features: int, offset, scale) -> InputMap:
        """The map of a scaler: each feature from its own column."""

        def array(value):
            return np.broadcast_to(np.asarray(value, dtype=np.float64), (n_features,)).copy()

        return cls(np.arange(n_features, dtype=np.int64), array(offset), array(scale), n_features)

    def then(self, other: InputMap) -> InputMap:
        """This map followed by ``other``, which reads this map's features."""
        if other.n_columns != len(self.columns):
            raise ValueError(
                f"a step reads {other.n_columns} features, the step before it gives "
                f"{len(self.columns)}"
            )
        picked = other.columns
        return InputMap(
            self.columns[picked],
            self.offset[picked] + other.offset * self.scale[picked],
            self.scale[picked] * other.scale,
            self.n_columns,
        )


def refuse(name: str, step, reason: str) -> NoReturn:
    raise InvalidParameterError(
        f"the pipeline step {name!r} ({type(step).__name__}) cannot be deployed: {reason}; "
        f"the client applies only {SUPPORTED}"
    )


def step_map(name: str, step) -> InputMap | None:
    """The map of one fitted step (None: it passes its input through)."""
    if passes_through(step):
        return None
    if type(step) is Pipeline:
        return chain(name, step.steps)
    if type(step) not in (ColumnTransformer, *AFFINE_STEPS):
        refuse(name, step, "it is not a per-feature affine map of its columns")
    try:
        check_is_fitted(step)
    except NotFittedError:
        refuse(name, step, "it is not fitted")
    if type(step) is ColumnTransformer:
        return column_transformer_map(name, step)
    if type(step) is MinMaxScaler and step.clip:
        refuse(name, step, "clip=True clips its output, which is not an affine map")
    return InputMap.per_feature(step.n_features_in_, *AFFINE_STEPS[type(step)](step))


def passes_through(step) -> bool:
    """Whether a pipeline step is the identity (``"passthrough"``, None, or a
    ``FunctionTransformer`` without a function)."""
    if type(step) is FunctionTransformer:
        return step.func is None
    return step is None or (isinstance(step, str) and step == "passthrough")


def chain(name: str, steps) -> InputMap | None:
    """The composed map of ``(name, step)`` pairs applied in order (None: all pass through)."""
    composed = None
    for step_name, step in steps:
        mapped = step_map(f"{name}/{step_name}" if name else step_name, step)
        if mapped is not None:
            composed = mapped if composed is None else composed.then(mapped)
    return composed


def column_transformer_map(name: str, transformer: ColumnTransformer) -> InputMap:
    """Each output feature of a fitted ``ColumnTransformer``: its transformer's map of the
    columns it selects, at the place ``output_indices_`` gives it (dropped columns give
    none)."""
    slices = transformer.output_indices_
    n_features = max(piece.stop for piece in slices.values())
    columns = np.full(n_features, -1, dtype=np.int64)
    offset, scale = np.zeros(n_features), np.ones(n_features)
    weights = transformer.transformer_weights or {}
    for part_name, part, _ in transformer.transformers_:
        piece = slices[part_name]
        if piece.stop == piece.start:  # dropped, or no columns
            continue
        selected = np.asarray(transformer._transformer_to_input_indices[part_name], np.int64)
        mapped = step_map(f"{name}/{part_name}", part)
        if mapped is None:
            mapped = InputMap.per_feature(len(selected), 0.0, 1.0)
        weight = weights.get(part_name, 1.0)
        if not weight > 0:
            refuse(name, transformer, f"transformer_weights[{part_name!r}] is not positive")
        columns[piece] = selected[mapped.columns]
        offset[piece] = mapped.offset
        scale[piece] = mapped.scale / weight
    if np.any(columns < 0):
        refuse(name, transformer, "its outputs are not all mapped from input columns")
    return InputMap(columns, offset, scale, transformer.n_features_in_)


def split(model_or_pipeline):
    """The fitted QNN estimator and the ``ModelIO`` a client needs: the estimator's own, or
    for a ``Pipeline``, with its steps before the estimator as data.

    Raises
    ------
    InvalidParameterError
        If a pipeline's last step is not a QNN estimator, or a step before it is not
        supported (named in the message).
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    """
    from concrete_qnn.estimators.export import FittedModelMethods

    pipeline = isinstance(model_or_pipeline, Pipeline)
    estimator = model_or_pipeline.steps[-1][1] if pipeline else model_or_pipeline
    if not isinstance(estimator, FittedModelMethods):
        raise InvalidParameterError(
            "deploy needs a QNNClassifier or QNNRegressor, or a Pipeline that ends in one, "
            f"got {type(estimator).__name__}"
        )
    input_map = chain("", model_or_pipeline.steps[:-1]) if pipeline else None
    check_is_fitted(estimator)
    io = estimator.integer_model_.io
    if input_map is None:
        return estimator, io
    if len(input_map.columns) != io.n_features:
        raise ValueError(
            f"the pipeline's steps give {len(input_map.columns)} features, its estimator "
            f"reads {io.n_features}"
        )
    identity = input_map.n_columns == io.n_features and np.array_equal(
        input_map.columns, np.arange(io.n_features)
    )
    return estimator, ModelIO(
        io.input_scale,
        io.input_range,
        io.n_features,
        io.output_scales,
        io.head,
        getattr(model_or_pipeline, "feature_names_in_", None),
        input_map.offset,
        input_map.scale,
        None if identity else input_map.columns,
        input_map.n_columns,
    )


def compile(model_or_pipeline, X=None):
    """Compile a fitted QNN estimator, or the one that ends a ``Pipeline``, for FHE.

    ``X``: rows the estimator (raw rows the pipeline) takes, added to the compilation input
    set after the pipeline's steps; None compiles from the corners of the input code range
    alone (the certificate sizes the circuit either way). Returns ``model_or_pipeline``.

    Raises
    ------
    InvalidParameterError
        If a pipeline step cannot be deployed (``split``).
    """
    estimator, _ = split(model_or_pipeline)
    if X is not None and isinstance(model_or_pipeline, Pipeline):
        for _, step in model_or_pipeline.steps[:-1]:
            if not passes_through(step):
                X = step.transform(X)
    estimator.compile(X)
    return model_or_pipeline


def save_fhe(model_or_pipeline, directory):
    """Write the deployment artifacts of a compiled QNN estimator, or of a ``Pipeline``
    whose steps before it the client then applies to raw rows (``FHEClient``).

    As the estimator's ``save_fhe``, which says what it returns and raises; the client
    artifact of a pipeline also holds its steps' composed map, its column selection and the
    pipeline's feature names. A step that cannot be deployed raises an
    ``InvalidParameterError`` that names it, before anything is written.
    """
    estimator, io = split(model_or_pipeline)
    return artifacts.save_fhe(estimator._compiled_circuit(), io, directory)
