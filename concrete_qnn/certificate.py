"""The accumulator certificate: per-layer worst-case intervals and bit-widths.

A certificate is computed from integer weight codes, bias codes and the codes each layer's
inputs can reach: the input quantizer's codes for the first layer,
for each later layer the smallest and largest entry of the previous layer's table over that
neuron's certified interval. It is a proof by interval arithmetic over every input, not a
sample; ``certify_network`` computes it layer by layer, since each table is built from its
own layer's certified interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from concrete_qnn.accumulator import accumulator_bounds, bits_needed, table_output_range
from concrete_qnn.exceptions import AccumulatorBoundError


@dataclass(frozen=True)
class LayerCertificate:
    """Worst-case accumulators of one linear layer.

    Attributes
    ----------
    name : str
        Layer name in the module (``"fc0"``, ...).
    input_low, input_high : int64 arrays, shape (n_in,)
        The codes each input can reach (``input_range`` summarizes them).
    fan_in : int array, shape (n_out,)
        Non-zero weight codes per neuron.
    lo, hi : int64 arrays, shape (n_out,)
        Worst-case accumulator interval per neuron, in accumulator units.
    bits : int64 array, shape (n_out,)
        Signed bit-width each neuron needs: its interval's, and that of its weighted sum
        before the bias is added (``[lo - B, hi - B]``), which the FHE circuit holds too
        (concrete-python gives an addition's operands the width of its result).
    observed : (int, int) or None
        Smallest and largest accumulator seen on data, when measured.
    lookup_bits : int or None
        Bits of the accumulator that the table lookup after this layer reads (the certified
        width less the low bits it drops), for a hidden layer of an integer model.
    """

    name: str
    input_low: np.ndarray
    input_high: np.ndarray
    fan_in: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    bits: np.ndarray
    observed: tuple[int, int] | None = None
    lookup_bits: int | None = None

    @property
    def input_range(self) -> tuple[int, int]:
        """Smallest and largest code any input of the layer can reach."""
        return int(self.input_low.min()), int(self.input_high.max())

    def with_observed(self, low: int, high: int) -> LayerCertificate:
        """A copy that also records the accumulator range observed on data."""
        return replace(self, observed=(int(low), int(high)))

    def with_lookup_bits(self, lookup_bits: int) -> LayerCertificate:
        """A copy that also records the bits its table lookup reads."""
        return replace(self, lookup_bits=int(lookup_bits))

    @classmethod
    def from_codes(
        cls,
        name: str,
        weight_codes: np.ndarray,
        bias_codes: np.ndarray,
        input_range: tuple,
    ) -> LayerCertificate:
        """Certify one layer from its weight codes (n_out, n_in), bias codes (n_out,) and
        the codes its inputs reach: ``(xmin, xmax)``, two ints or two int arrays (n_in,)."""
        weights = np.asarray(weight_codes, dtype=np.int64)
        low, high = (
            np.broadcast_to(np.asarray(end, dtype=np.int64), weights.shape[1:]).copy()
            for end in input_range
        )
        lo, hi = accumulator_bounds(weights, bias_codes, (low, high))
        bias = np.asarray(bias_codes, dtype=np.int64)
        bits = np.maximum(bits_needed(lo, hi), bits_needed(lo - bias, hi - bias))
        fan_in = np.count_nonzero(weights, axis=1)
        return cls(name, low, high, fan_in, lo, hi, bits)


@dataclass(frozen=True)
class AccumulatorCertificate:
    """Per-layer certificate of a whole network against a signed ``n_accum_bits`` bound."""

    layers: tuple[LayerCertificate, ...]
    n_accum_bits: int

    @property
    def max_bits(self) -> int:
        """Largest accumulator bit-width over every neuron of every layer."""
        return int(max(layer.bits.max() for layer in self.layers))

    @property
    def holds(self) -> bool:
        """True when every neuron fits ``n_accum_bits`` signed bits."""
        return self.max_bits <= self.n_accum_bits

    def require(self, problem: str) -> None:
        """Raise AccumulatorBoundError (a ValueError) unless the certificate holds:
        ``problem``, then the layers over the bound, their width, and the table."""
        if self.holds:
            return
        over = [layer.name for layer in self.layers if layer.bits.max() > self.n_accum_bits]
        raise AccumulatorBoundError(
            f"{problem}: {', '.join(over)} need up to {self.max_bits}-bit accumulators, "
            f"n_accum_bits is {self.n_accum_bits}\n{self}"
        )

    def rows(self) -> list[dict]:
        """One summary dict per layer: fan-in (max), lo (min), hi (max), bits (max).

        With lookups, also ``lookup_bits`` (None for the last layer, which has none); with
        observed ranges, also ``observed_lo`` and ``observed_hi``.
        """
        with_lookups = any(layer.lookup_bits is not None for layer in self.layers)
        rows = []
        for layer in self.layers:
            row = {
                "layer": layer.name,
                "neurons": int(layer.fan_in.size),
                "fan_in": int(layer.fan_in.max()),
                "input_codes": f"[{layer.input_range[0]}, {layer.input_range[1]}]",
                "lo": int(layer.lo.min()),
                "hi": int(layer.hi.max()),
                "bits": int(layer.bits.max()),
            }
            if with_lookups:
                row["lookup_bits"] = layer.lookup_bits
            if layer.observed is not None:
                row["observed_lo"], row["observed_hi"] = layer.observed
            rows.append(row)
        return rows

    def to_frame(self):
        """The summary table as a pandas DataFrame, one row per layer."""
        import pandas as pd

        return pd.DataFrame(self.rows()).set_index("layer")

    def to_text(self) -> str:
        """The summary table as aligned text, with the verdict on its last line."""
        rows = self.rows()
        columns = list(rows[0])
        cells = [columns] + [
            ["-" if row[c] is None else str(row[c]) for c in columns] for row in rows
        ]
        widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
        lines = [
            "  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) for line in cells
        ]
        verdict = "holds" if self.holds else "VIOLATED"
        lines.append(
            f"max accumulator: {self.max_bits} bits, bound {self.n_accum_bits} bits: {verdict}"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def certify_network(
    n_layers: int,
    layer_codes: Callable[[int, tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]],
    input_range: tuple[int, int],
    n_accum_bits: int,
    tabulate: Callable[[int, LayerCertificate], tuple[np.ndarray, np.ndarray, int]],
    activation_range: tuple[int, int] | None = None,
) -> AccumulatorCertificate:
    """The certificate of a network, layer by layer over reachable input codes.

    Layer 0's inputs reach ``input_range`` (the input quantizer's codes). Layer ``l``'s
    interval gives its table (``tabulate``), and that table's smallest and largest entries
    over each neuron's interval are the codes layer ``l + 1``'s input from that neuron
    reaches (``accumulator.table_output_range``).

    Parameters
    ----------
    n_layers : int
    layer_codes : callable ``(layer, (low, high)) -> (weight_codes, bias_codes)``
        Integer codes of a layer, int64 (n_out, n_in) and (n_out,), given the codes its
        inputs reach (two ints for layer 0, two int64 arrays (n_in,) after it; a caller
        may repair the layer against them).
    input_range : (int, int), the codes of layer 0's input quantizer
    n_accum_bits : int, the bound the certificate is checked against
    tabulate : callable ``(layer, LayerCertificate) -> (table, offsets, shift) or None``
        The table a hidden layer's lookup uses, as ``IntegerModel`` stores it: int64
        (n_out, width), int64 (n_out,) and the low bits dropped; or None for no table (the
        next layer's inputs then reach every code of ``activation_range``). It may raise
        ValueError.
    activation_range : (int, int) or None, the codes of the later layers' input quantizers
        (``input_range`` when None: every quantizer has the same bits)

    Raises
    ------
    ValueError
        If a table does not cover its neuron's certified interval.
    """
    layers = []
    reach = input_range
    for layer in range(n_layers):
        weights, bias = layer_codes(layer, reach)
        layers.append(LayerCertificate.from_codes(f"fc{layer}", weights, bias, reach))
        if layer == n_layers - 1:
            break
        # A layer over the bound (the certificate fails) gets no table: its width grows
        # with the overflow.
        lookup = None if layers[-1].bits.max() > n_accum_bits else tabulate(layer, layers[-1])
        if lookup is None:  # no table: the next layer's inputs may reach every code
            reach = input_range if activation_range is None else activation_range
        else:
            table, offsets, shift = lookup
            reach = table_output_range(table, offsets, layers[-1].lo, layers[-1].hi, shift)
    return AccumulatorCertificate(tuple(layers), int(n_accum_bits))
