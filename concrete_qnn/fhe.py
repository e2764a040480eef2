"""Encrypted inference of an IntegerModel through concrete-python (the ``fhe`` extra).

The circuit takes one row of input codes (encrypted), computes each layer's accumulators
with clear integer weights, applies one table lookup per hidden neuron (the integer model's
tables) and returns the last layer's accumulators. Each layer's accumulator bit-width is set
from the certificate with ``fhe.hint``, so the circuit is correct for every input inside the
input quantizer's range, not only for the rows seen at compile time.
"""

from __future__ import annotations

import numpy as np

from concrete_qnn.integer import IntegerModel

FHE_MODES = ("disable", "simulate", "execute")


def _import_fhe():
    try:
        from concrete import fhe
    except ImportError:
        raise ImportError(
            "FHE needs concrete-python: pip install 'concrete-qnn[fhe]' (it requires numpy<2)"
        ) from None
    return fhe


class FHECircuit:
    """A compiled circuit for one ``IntegerModel``; keys are generated once and kept.

    Parameters
    ----------
    integer_model : IntegerModel
    input_codes : int64 array (n_samples, n_features) or None
        Rows added to the compilation input set. The two corners of the input code range
        (every feature at its lowest code, every feature at its highest) are always in it,
        and are enough (None: they alone): they give the input's full range, and the
        certificate, not the input set, sizes every accumulator.
    configuration : concrete.fhe.Configuration or None
        Compilation options; None uses ``default_configuration()``.

    Attributes
    ----------
    output_offsets : int64 array (n_outputs,)
        The certified lower end of each output accumulator: the circuit returns
        ``A - output_offsets`` (never negative, as every accumulator it computes), and
        ``run`` adds it back to what it decrypts.
    """

    def __init__(
        self, integer_model: IntegerModel, input_codes: np.ndarray | None = None, configuration=None
    ):
        fhe = _import_fhe()
        if configuration is None:
            configuration = default_configuration()
        self.integer_model = integer_model
        certificate = integer_model.certificate
        layer_bits = [int(layer.bits.max()) for layer in certificate.layers]
        shifts = [*integer_model.lsbs_to_remove, 0]  # the output is read whole
        # concrete types a value signed only if the input set made it negative, and reads
        # an unsigned value that is negative wrongly (a lookup returns garbage). So every
        # layer computes A - c, c its certified lower end rounded down to a multiple of
        # 2^shift (folded into the bias): never negative, and below 2^bits, since the
        # certified interval lies in the signed bits-bit range.
        offsets = [
            (layer.lo >> shift) << shift
            for layer, shift in zip(certificate.layers, shifts, strict=True)
        ]
        self.output_offsets = offsets[-1].astype(np.int64)
        tables = [
            fhe.LookupTable(
                [
                    fhe.LookupTable(row)
                    for row in _shifted_table(integer_model, layer, bits, offsets[layer])
                ]
            )
            for layer, bits in enumerate(layer_bits[:-1])
        ]
        weights = [weight.T.copy() for weight in integer_model.weights]
        biases = [bias - offset for bias, offset in zip(integer_model.biases, offsets, strict=True)]

        def inference(x):
            codes = x
            for layer, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
                accumulators = fhe.hint(codes @ weight + bias, bit_width=layer_bits[layer])
                if layer < len(tables):
                    if shifts[layer]:
                        # Hint the truncated value too, or concrete sizes the lookup from
                        # the input set instead of the certificate.
                        accumulators = fhe.hint(
                            fhe.truncate_bit_pattern(accumulators, shifts[layer]),
                            bit_width=layer_bits[layer],
                        )
                    codes = tables[layer][accumulators]
            return accumulators

        low, high = integer_model.input_range
        n_features = integer_model.n_features_in
        corners = [np.full(n_features, low), np.full(n_features, high)]
        rows = [] if input_codes is None else list(np.asarray(input_codes, dtype=np.int64))
        inputset = corners + rows
        compiler = fhe.Compiler(inference, {"x": "encrypted"})
        self.circuit = compiler.compile(inputset, configuration)
        self.max_bit_width = int(self.circuit.graph.maximum_integer_bit_width())
        if self.max_bit_width > certificate.n_accum_bits:
            raise RuntimeError(
                f"the circuit needs {self.max_bit_width} bits, more than the certified "
                f"n_accum_bits={certificate.n_accum_bits}"
            )
        self.n_table_lookups = sum(table.shape[0] for table in integer_model.tables)
        self._keys_generated = False

    def keygen(self) -> None:
        """Generate the secret and evaluation keys (once)."""
        if not self._keys_generated:
            self.circuit.keygen()
            self._keys_generated = True

    def run(self, codes: np.ndarray, fhe: str) -> np.ndarray:
        """Last-layer accumulators, int64 (n_samples, n_outputs), row by row (the circuit's
        outputs plus ``output_offsets``).

        ``fhe="simulate"`` evaluates the circuit in the clear with FHE semantics;
        ``"execute"`` encrypts each row, runs the circuit and decrypts.
        """
        if fhe == "simulate":
            rows = [self.circuit.simulate(row) for row in codes]
        elif fhe == "execute":
            self.keygen()
            rows = [self.circuit.encrypt_run_decrypt(row) for row in codes]
        else:
            raise ValueError(f"fhe must be 'simulate' or 'execute' here, got {fhe!r}")
        return np.asarray(rows, dtype=np.int64).reshape(len(codes), -1) + self.output_offsets


def _shifted_table(
    integer_model: IntegerModel, layer: int, bits: int, offsets: np.ndarray
) -> np.ndarray:
    """Per-neuron tables over every unsigned ``bits``-bit value ``v = A - c``.

    ``c`` (``offsets``, int64 (n_out,)) is a multiple of ``2^shift``, so index ``v`` holds
    the integer model's entry for ``floor(A / 2^shift) = floor(v / 2^shift) + c / 2^shift``.
    Values outside a neuron's certified interval are unreachable; they repeat the
    interval's edge entries.
    """
    table, first = integer_model.tables[layer], integer_model.table_offsets[layer]
    shift = integer_model.lsbs_to_remove[layer]
    buckets = (np.arange(2**bits)[None, :] >> shift) + (offsets >> shift)[:, None]
    index = np.clip(buckets - first[:, None], 0, table.shape[1] - 1)
    return np.take_along_axis(table, index, axis=1)


def check_fhe_mode(fhe: str) -> str:
    """Return ``fhe`` if it names a mode, else raise ValueError listing the modes."""
    if fhe not in FHE_MODES:
        raise ValueError(f"fhe must be one of {', '.join(map(repr, FHE_MODES))}, got {fhe!r}")
    return fhe


# Probability that one programmable bootstrap (table lookup) returns a wrong value: Concrete
# ML's default. It costs ~3% more complexity than concrete-python's default (a global 1e-5 per
# circuit): measured on the breast_cancer default model, 9.50e11 vs 9.20e11 untruncated,
# 7.87e10 vs 7.67e10 with 4-bit lookups. A row of ~1,200 bootstraps is wrong with probability
# about 1e-9.
P_ERROR = 2.0**-40


def default_configuration():
    """The concrete-python ``Configuration`` that ``compile`` uses.

    ``p_error=P_ERROR`` per bootstrap (no global budget), concrete's MULTI parameter
    selection (each precision gets its own cryptographic parameters, so the cheap lookups
    after truncation do not pay for the wide ones), compressed evaluation keys and input
    ciphertexts (smaller keys and uploads for a client/server deployment).
    """
    fhe = _import_fhe()
    return fhe.Configuration(
        show_progress=False,
        p_error=P_ERROR,
        global_p_error=None,
        parameter_selection_strategy=fhe.ParameterSelectionStrategy.MULTI,
        compress_evaluation_keys=True,
        compress_input_ciphertexts=True,
    )
