"""The accumulator certificate: per-layer worst-case intervals and bit-widths.

A certificate is computed from integer weight codes, bias codes and each layer's input code
range alone (``DESIGN.md`` section 3): it is a proof by interval arithmetic, not a sample.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from concrete_qnn.accumulator import accumulator_bounds, bits_needed


@dataclass(frozen=True)
class LayerCertificate:
    """Worst-case accumulators of one linear layer.

    Attributes
    ----------
    name : str
        Layer name in the module (``"fc0"``, ...).
    input_range : (int, int)
        The codes the layer's input quantizer can produce.
    fan_in : int array, shape (n_out,)
        Non-zero weight codes per neuron.
    lo, hi : int64 arrays, shape (n_out,)
        Worst-case accumulator interval per neuron, in accumulator units.
    bits : int64 array, shape (n_out,)
        Signed bit-width each neuron's interval needs.
    observed : (int, int) or None
        Smallest and largest accumulator seen on data, when measured.
    lookup_bits : int or None
        Bits of the accumulator that the table lookup after this layer reads (the certified
        width less the low bits it drops), for a hidden layer of an integer model.
    """

    name: str
    input_range: tuple[int, int]
    fan_in: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    bits: np.ndarray
    observed: tuple[int, int] | None = None
    lookup_bits: int | None = None

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
        input_range: tuple[int, int],
    ) -> LayerCertificate:
        """Certify one layer from its weight codes (n_out, n_in) and bias codes (n_out,)."""
        lo, hi = accumulator_bounds(weight_codes, bias_codes, input_range)
        fan_in = np.count_nonzero(np.asarray(weight_codes), axis=1)
        return cls(name, tuple(int(v) for v in input_range), fan_in, lo, hi, bits_needed(lo, hi))


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
