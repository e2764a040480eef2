"""The checks an integer model's arrays pass before it is built: dtypes, shapes, code
ranges, exact int64 arithmetic, the accumulator certificate recomputed from the weights and
each table against its certified interval; and the lookup limit (``MAX_LOOKUP_BITS``),
which the network and the estimators check as well.
"""

from __future__ import annotations

import numpy as np

from concrete_qnn.certificate import AccumulatorCertificate, LayerCertificate, certify_network
from concrete_qnn.exceptions import InvalidParameterError

# Bits a table lookup reads at most: a table has at most 2^16 entries per neuron (512 KiB of
# int64), concrete-python's largest table lookup. A wider accumulator must be read rounded.
MAX_LOOKUP_BITS = 16
# Accumulators (and the certificate's worst cases) are computed in int64: refuse weights whose
# sums could leave [-2^62, 2^62], far from int64's limits.
_INT64_SAFE = 2**62


def require_lookup_bits(bits: int, table: str) -> None:
    """Refuse a table lookup that reads more than ``MAX_LOOKUP_BITS`` bits.

    The one check of the lookup limit: the integer model calls it for each table it holds,
    the network before building a table, the estimators before training.

    Parameters
    ----------
    bits : int
        Bits of the accumulator the table reads (``2^bits`` entries per neuron).
    table : str
        The table, as the message names it (``"fc0's table"``, ``"tables[1]"``).

    Raises
    ------
    InvalidParameterError
        ``"<table> would read <bits> bits of its accumulator (2^<bits> entries per
        neuron); tables read at most 16 bits: set rounding_threshold_bits to at most 16"``.
    """
    if bits > MAX_LOOKUP_BITS:
        raise InvalidParameterError(
            f"{table} would read {bits} bits of its accumulator (2^{bits} entries per "
            f"neuron); tables read at most {MAX_LOOKUP_BITS} bits: set "
            f"rounding_threshold_bits to at most {MAX_LOOKUP_BITS}"
        )


def check_array(name: str, array, dtype, ndim: int | None = None, shape=None) -> None:
    """Refuse anything but a numpy array of ``dtype`` (of ``ndim`` dimensions, of ``shape``).

    Raises
    ------
    ValueError
        Naming ``name``, the expected and the found dtype, dimensions or shape.
    """
    if not isinstance(array, np.ndarray) or array.dtype != dtype:
        raise ValueError(
            f"{name} must be a numpy array of {np.dtype(dtype).name}, got "
            f"{getattr(array, 'dtype', type(array).__name__)}"
        )
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")


def check_layers(model) -> None:
    """Check an integer model's per-layer arrays: one weight, bias and scale array per
    layer, one table and offsets array per hidden layer, int64 weight codes (n_out, n_in)
    within the weight codes, matching widths, int64 biases and positive finite float64
    scales (n_out,), and accumulators that stay within int64's exact range.

    Raises
    ------
    ValueError
        Naming the first array that fails.
    """
    n = len(model.weights)
    if n < 1 or not (len(model.biases) == len(model.scales) == n):
        raise ValueError(
            f"weights, biases and scales need one array per layer, got {len(model.weights)}, "
            f"{len(model.biases)} and {len(model.scales)}"
        )
    if not (len(model.tables) == len(model.table_offsets) == n - 1):
        raise ValueError(
            f"a {n}-layer model needs {n - 1} tables and table offsets, got "
            f"{len(model.tables)} and {len(model.table_offsets)}"
        )
    w_low, w_high = model.weight_range
    for layer, (weight, bias, scale) in enumerate(
        zip(model.weights, model.biases, model.scales, strict=True)
    ):
        check_array(f"weights[{layer}]", weight, np.int64, ndim=2)
        n_out, n_in = weight.shape
        if layer > 0 and n_in != model.weights[layer - 1].shape[0]:
            raise ValueError(
                f"weights[{layer}] has {n_in} inputs but layer {layer - 1} has "
                f"{model.weights[layer - 1].shape[0]} outputs"
            )
        check_array(f"biases[{layer}]", bias, np.int64, shape=(n_out,))
        check_array(f"scales[{layer}]", scale, np.float64, shape=(n_out,))
        if weight.size and (weight.min() < w_low or weight.max() > w_high):
            raise ValueError(
                f"weights[{layer}] has codes in [{weight.min()}, {weight.max()}], outside "
                f"the {model.config['n_w_bits']}-bit weight codes [{w_low}, {w_high}]"
            )
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError(f"scales[{layer}] must be positive and finite")
        # the same bound as partial_sum_bound, in float64, which cannot overflow
        largest_input = float(max(abs(code) for code in model.layer_input_range(layer)))
        magnitude = np.abs(weight.astype(np.float64)).sum(axis=1) * largest_input
        magnitude += np.abs(bias.astype(np.float64))
        if magnitude.size and magnitude.max() >= _INT64_SAFE:
            raise ValueError(
                f"weights[{layer}] and biases[{layer}] allow accumulators beyond 2^62, "
                "outside exact int64 arithmetic"
            )


def check_table(model, layer: int, layer_certificate: LayerCertificate) -> None:
    """Check hidden layer ``layer``'s table, offsets and dropped bits against its certified
    interval: the shift fits the accumulator's width, the table (n_out, width) of int64
    reads at most ``MAX_LOOKUP_BITS`` bits, covers every certified value and holds
    activation codes only.

    Raises
    ------
    ValueError
        Naming the first array that fails (``InvalidParameterError`` for a table over the
        lookup limit).
    """
    low, high = model.activation_range
    table, offsets = model.tables[layer], model.table_offsets[layer]
    shift = model.lsbs_to_remove[layer]
    layer_bits = int(layer_certificate.bits.max())
    if (
        isinstance(shift, bool)
        or not isinstance(shift, (int, np.integer))
        or not 0 <= shift < layer_bits
    ):
        raise ValueError(
            f"lsbs_to_remove[{layer}] must be an integer in [0, {layer_bits}) for a "
            f"{layer_bits}-bit accumulator, got {shift!r}"
        )
    n_out = model.weights[layer].shape[0]
    check_array(f"tables[{layer}]", table, np.int64, ndim=2)
    check_array(f"table_offsets[{layer}]", offsets, np.int64, shape=(n_out,))
    if table.shape[0] != n_out:
        raise ValueError(f"tables[{layer}] has {table.shape[0]} rows, expected {n_out}")
    require_lookup_bits((table.shape[1] - 1).bit_length(), f"tables[{layer}]")
    if np.any(offsets > layer_certificate.lo >> shift) or np.any(
        offsets + table.shape[1] - 1 < layer_certificate.hi >> shift
    ):
        raise ValueError(
            f"tables[{layer}] does not cover every certified accumulator value "
            f"[{layer_certificate.lo.min()}, {layer_certificate.hi.max()}]"
        )
    if table.size and (table.min() < low or table.max() > high):
        raise ValueError(
            f"tables[{layer}] holds codes outside the activation codes [{low}, {high}]"
        )


def partial_sum_bound(model, layer: int) -> int:
    """Bound on |any partial sum| of layer ``layer``'s accumulators (int64 arithmetic: call
    after ``check_layers``)."""
    weight, bias = model.weights[layer], model.biases[layer]
    largest_input = max(abs(code) for code in model.layer_input_range(layer))
    return int((np.abs(weight).sum(axis=1) * largest_input + np.abs(bias)).max())


def certify(model) -> AccumulatorCertificate:
    """The certificate of an integer model over its reachable input codes, each hidden
    layer with its ``lookup_bits``; validates each table on the way (``check_table``).

    Layer ``l + 1``'s inputs reach the entries of layer ``l``'s table over its certified
    interval (``certify_network``, which asks only for layers within ``n_accum_bits``), so
    each table is validated before it is read.

    Raises
    ------
    ValueError
        If ``lsbs_to_remove`` has not one entry per hidden layer, or a table fails
        ``check_table``.
    AccumulatorBoundError
        If a layer's certified accumulator is wider than ``n_accum_bits``.
    """
    if len(model.lsbs_to_remove) != len(model.tables):
        raise ValueError(
            f"lsbs_to_remove needs one entry per hidden layer ({len(model.tables)}), got "
            f"{len(model.lsbs_to_remove)}"
        )

    def validated_table(layer: int, layer_certificate: LayerCertificate):
        check_table(model, layer, layer_certificate)
        return model.tables[layer], model.table_offsets[layer], int(model.lsbs_to_remove[layer])

    certificate = certify_network(
        model.n_layers,
        lambda layer, _: (model.weights[layer], model.biases[layer]),
        model.input_range,
        int(model.config["n_accum_bits"]),
        validated_table,
        model.activation_range,
    )
    certificate.require("the weights break the accumulator bound")
    return AccumulatorCertificate(
        tuple(
            layer.with_lookup_bits(layer.bits.max() - shift)
            for layer, shift in zip(certificate.layers, model.lsbs_to_remove, strict=False)
        )
        + certificate.layers[len(model.tables) :],
        certificate.n_accum_bits,
    )
