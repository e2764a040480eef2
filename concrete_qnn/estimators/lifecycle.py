"""The fitted model's lifecycle: built after training, dropped before it, and what
``load_params`` does to it.

``integer_model_`` exists exactly when ``module_`` is the pruned network it was built from;
``fhe_circuit_`` was compiled from that integer model. ``load_params`` outside ``fit`` makes
the loaded network the fitted model, or refuses weights that break the accumulator bound
(``AccumulatorBoundError``) and keeps the fitted model, its circuit included. A training call
that raises, whatever the exception and wherever it is raised (``restored_on_error``), leaves
the estimator as it was: fitted with the same network, integer model and circuit, or unfitted.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch

from concrete_qnn.accumulator import lookup_bits_per_layer
from concrete_qnn.exceptions import AccumulatorBoundError
from concrete_qnn.integer import IntegerModel

# A hidden layer's lookup that reads this many bits or fewer, where more were asked for, has
# lost its accumulator: iris at module__n_accum_bits=16 with the default 5-bit lookups
# certified layers at 13 and 9 bits that read 2 and 1 bits, and scored 0.342 held out
# (rounding_threshold_bits=13: 0.974).
COARSE_LOOKUP_BITS = 2

# What a fit builds from the trained network.
FITTED = ("integer_model_", "fhe_circuit_")


def integer_model(net, rounding_threshold_bits) -> IntegerModel:
    """``net.module_`` as an integer model whose lookups read ``rounding_threshold_bits``
    bits (see ``SparseQuantNeuralNetwork.to_integer_model``), with a warning where a hidden
    layer's lookup reads almost nothing."""
    model = net.module_.to_integer_model(
        net._output_head(), getattr(net, "feature_names_in_", None), rounding_threshold_bits
    )
    _warn_coarse_lookups(net, model.certificate, rounding_threshold_bits)
    return model


def _warn_coarse_lookups(net, certificate, rounding_threshold_bits) -> None:
    """Warn where a hidden layer's lookup reads ``COARSE_LOOKUP_BITS`` bits or fewer
    although more were asked for (a layer certified far below ``n_accum_bits``)."""
    hidden = certificate.layers[:-1]
    asked = lookup_bits_per_layer(rounding_threshold_bits, len(hidden))
    coarse = [
        f"{layer.name} reads {layer.lookup_bits} of its {int(layer.bits.max())} bits"
        for layer, bits in zip(hidden, asked, strict=True)
        if bits is not None and layer.lookup_bits < bits and layer.lookup_bits <= COARSE_LOOKUP_BITS
    ]
    if coarse:
        warnings.warn(
            f"table lookups read almost nothing: {'; '.join(coarse)}. Each lookup drops "
            "the module__n_accum_bits - rounding_threshold_bits low bits training "
            f"dropped (module__n_accum_bits={net.module_.n_accum_bits}, "
            f"rounding_threshold_bits={rounding_threshold_bits!r}), and these layers' "
            "accumulators are narrower than module__n_accum_bits, so the network "
            "computes with a few buckets and predicts poorly: raise "
            "rounding_threshold_bits (None reads every bit) or lower module__n_accum_bits",
            stacklevel=4,  # set_params' caller; fit and load_params warn from inside
        )


# What an unpickled estimator that was compiled warns: the circuit holds concrete-python's
# native objects, which do not pickle.
CIRCUIT_NOT_PICKLED = "the compiled FHE circuit does not pickle"


def warn_circuit_dropped(net) -> None:
    """Warn that ``net`` was compiled when pickled and its circuit is gone."""
    warnings.warn(
        f"{CIRCUIT_NOT_PICKLED}: it was dropped when this {type(net).__name__} was pickled; "
        "call compile() to rebuild it (no data needed) before predict(fhe=...) or save_fhe",
        stacklevel=3,  # pickle.loads' caller
    )


def build_integer_model(net) -> None:
    """Build ``integer_model_`` from the trained network."""
    net.integer_model_ = integer_model(net, net.rounding_threshold_bits)


def forget_fitted_model(net, names=FITTED) -> None:
    """Drop what was built from the network (``names``: all of it by default)."""
    for name in names:
        if name in vars(net):
            delattr(net, name)


# What a training call changes in place rather than replaces: ``partial_fit`` and
# ``warm_start`` train the network, and skorch's ``initialize`` clears the history.
TRAINED_IN_PLACE = ("module_", "history_")


@contextmanager
def restored_on_error(net) -> Iterator[None]:
    """Put every attribute of ``net`` back if the block raises (any exception, a
    ``KeyboardInterrupt`` outside skorch's epochs included): for an initialized ``net``, a
    copy of its network, history and optimizer state is kept to go back to."""
    # The instance dictionary itself: scikit-learn's ``validate_data`` sets and deletes
    # ``n_features_in_`` and ``feature_names_in_`` on the estimator, and setting attributes
    # back one by one would go through skorch's ``__setattr__``, which registers torch
    # components anew.
    saved = dict(vars(net))
    trained, optimizer_state = {}, None
    if net.initialized_:
        with torch.random.fork_rng(devices=[]):  # the copy is rebuilt (``nn.state``)
            trained = copy.deepcopy({name: saved[name] for name in TRAINED_IN_PLACE})
        optimizer_state = copy.deepcopy(net.optimizer_.state_dict())
    try:
        yield
    except BaseException:
        vars(net).clear()
        vars(net).update(saved, **trained)
        if optimizer_state is not None:  # point the optimizer at the copy, as it was
            net.initialize_optimizer()
            net.optimizer_.load_state_dict(optimizer_state)
        raise


class FittedSnapshot(NamedTuple):
    """A fitted estimator's network state dict and what was built from it, to go back to."""

    state: dict
    built: dict

    @classmethod
    def take(cls, net) -> FittedSnapshot | None:
        """A copy, or None outside a fitted estimator or inside ``fit``."""
        if net._in_training_loop or not net.__sklearn_is_fitted__():
            return None
        built = {name: getattr(net, name) for name in FITTED if name in vars(net)}
        return cls(copy.deepcopy(net.module_.state_dict()), built)

    def restore(self, net) -> None:
        net.module_.load_state_dict(self.state)
        net.initialize_optimizer()
        for name, value in self.built.items():
            setattr(net, name, value)


def load_params(net, load: Callable[[], None]) -> None:
    """Run skorch's ``load_params`` (``load``) on ``net``, then, outside ``fit``, make the
    loaded network the fitted model (also when the load fails partway, so the estimator
    still answers for the network it holds).

    Raises
    ------
    AccumulatorBoundError
        Outside ``fit``, if the loaded weights break ``net``'s accumulator bound; a fitted
        estimator then keeps its network, integer model and compiled circuit.
    """
    before = _parameter_ids(net)
    kept = FittedSnapshot.take(net)
    try:
        load()
    finally:
        if _parameter_ids(net) != before:  # layers rebuilt to the saved widths
            net.initialize_optimizer()
        if net.initialized_ and not net._in_training_loop:
            _adopt_loaded_network(net, kept)


def _adopt_loaded_network(net, kept: FittedSnapshot | None) -> None:
    """Make the loaded network the fitted model, or restore ``kept`` and raise where its
    weights break the accumulator bound. Where nothing was loaded (a refused state dict),
    the fitted model, its circuit included, stands."""
    if kept is not None and _same_state(net.module_.state_dict(), kept.state):
        return
    forget_fitted_model(net)
    try:
        if net.module_.pruning_enabled:
            net.module_.make_pruning_permanent()
            net.initialize_optimizer()
        build_integer_model(net)
    except ValueError as error:
        if kept is None:
            raise
        kept.restore(net)
        raise AccumulatorBoundError(
            "the loaded parameters do not fit this estimator's network; nothing was "
            f"loaded, the fitted model is kept: {error}"
        ) from error


def _parameter_ids(net) -> list[int]:
    module = getattr(net, "module_", None)
    return [] if module is None else [id(p) for p in module.parameters()]


def _same_state(state: dict, other: dict) -> bool:
    """Whether two state dicts hold the same keys and equal tensors."""
    return state.keys() == other.keys() and all(
        torch.equal(state[key], other[key]) for key in state
    )
