"""Conversion: the pruned network's integer codes, its certificate and its lookup tables.

Reads a ``SparseQuantNeuralNetwork`` in eval mode as integers (``layer_codes``: weight codes,
bias codes in accumulator units, accumulator scales), walks its layers in order to certify
each neuron over the input codes it can reach (``certify``), tabulates each hidden neuron's
activation over its certified accumulator interval, read at the rounding training used
(``table``), and assembles the ``IntegerModel`` (``to_integer_model``).
"""

from __future__ import annotations

import numpy as np
import torch

from concrete_qnn.accumulator import lookup_bits_per_layer, lsbs_to_remove
from concrete_qnn.certificate import AccumulatorCertificate, LayerCertificate, certify_network
from concrete_qnn.integer import (
    CONFIG_KEYS,
    MAX_LOOKUP_BITS,
    IntegerModel,
    OutputHead,
    require_lookup_bits,
)
from concrete_qnn.nn import lookups
from concrete_qnn.nn.quantizers import BIAS_CODE_RANGE

# Table entries computed at once in to_integer_model: bounds its temporaries (~64 MB).
_TABLE_CHUNK_ENTRIES = 2**20


def layer_codes(net, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer codes of layer ``layer`` as the eval-mode forward uses them.

    Returns
    -------
    weight_codes : int64 array (n_out, n_in)
    bias_codes : int64 array (n_out,), ``round(bias / (s_w * s_x))`` saturated to 32
        bits, as Brevitas' ``Int32Bias`` quantizes it
    bias_scale : float64 array (n_out,), ``s_w * s_x``: real value of one accumulator unit
    """
    fc, quant = getattr(net, f"fc{layer}"), getattr(net, f"quant{layer}")
    with net.eval_mode():
        quant_weight = fc.quant_weight()
        scale = (quant_weight.scale * quant.act_quant.scale()).reshape(-1)
        scale = scale.expand(fc.out_features)
        bias = torch.round(fc.bias / scale)
    return (
        quant_weight.int().cpu().numpy().astype(np.int64),
        np.clip(bias.cpu().double().numpy(), *BIAS_CODE_RANGE).astype(np.int64),
        scale.cpu().numpy().astype(np.float64),
    )


def to_integer_model(
    net, head: OutputHead, feature_names=None, rounding_threshold_bits=None
) -> IntegerModel:
    """The integer-only model that computes what this module computes in eval mode.

    Call after ``make_pruning_permanent``. Each hidden layer's table maps every
    certified accumulator value ``A`` of a neuron to the next input code
    ``round(act(s * A) / s_next)`` clipped to the code range, evaluated in float32 as
    the torch forward pass evaluates it.

    With ``rounding_threshold_bits`` (None, an integer >= 1, or one entry per hidden
    layer; see ``accumulator.lookup_bits_per_layer``) a table drops the low
    ``k = n_accum_bits - rounding_threshold_bits`` bits of the accumulator, as training
    does (``rounded_lookups``; fewer when the layer is certified at ``k`` bits or less):
    it reads that many high bits of an accumulator certified at ``n_accum_bits``, fewer
    of a narrower one. It is indexed by ``floor(A / 2^k)`` and each entry is the
    function above at the centre of the accumulator values of its bucket that lie in
    the neuron's certified interval. The
    model then differs from the torch module by that rounding, exactly as its FHE
    circuit does.

    Raises
    ------
    ValueError
        If pruning masks are still attached, ``rounding_threshold_bits`` is invalid, a
        table would read more than ``MAX_LOOKUP_BITS`` (16) bits of an accumulator
        (checked before any table is allocated), or the certificate does not hold
        (weights loaded from a network of another bound).
    """
    if net.pruning_enabled:
        raise ValueError("make_pruning_permanent() first: pruning masks are still attached")
    lookup_bits = lookup_bits_per_layer(rounding_threshold_bits, net.n_layers - 1)
    certificate, codes, lookups = certify(net, lookup_bits, build_tables=True)
    certificate.require(
        "the weights break the accumulator bound (from a network of another bound?), so "
        "no integer model is built"
    )
    with net.eval_mode():
        input_scale = float(net.quant0.act_quant.scale())
    return IntegerModel(
        config={
            name: net.input_bit_width if name == "n_input_bits" else getattr(net, name)
            for name in CONFIG_KEYS
        },
        input_scale=input_scale,
        weights=[weight for weight, _, _ in codes],
        biases=[bias for _, bias, _ in codes],
        scales=[scale for _, _, scale in codes],
        tables=[table for table, _, _ in lookups],
        table_offsets=[offsets for _, offsets, _ in lookups],
        head=head,
        feature_names=feature_names,
        lsbs_to_remove=[shift for _, _, shift in lookups],
    )


def accumulator_certificate(net, rounding_threshold_bits=None) -> AccumulatorCertificate:
    """Per-layer worst-case accumulators over every reachable input code.

    Layer 0's inputs reach the input quantizer's codes; each later layer's inputs reach
    the smallest and largest entry of the previous layer's table over that neuron's
    certified interval (after ReLU never a negative code). The tables are those of
    ``to_integer_model(head, rounding_threshold_bits=rounding_threshold_bits)``, so this
    is that integer model's certificate without its ``lookup_bits``.

    Raises
    ------
    ValueError
        If ``rounding_threshold_bits`` is invalid (see ``to_integer_model``).
    """
    lookup_bits = lookup_bits_per_layer(rounding_threshold_bits, net.n_layers - 1)
    return certify(net, lookup_bits)[0]


def certify(net, lookup_bits: list, prepare_layer=None, build_tables: bool = False) -> tuple:
    """Certificate, layer codes and tables, computed layer by layer.

    With ``prepare_layer``, ``prepare_layer(layer, reach)`` runs before each layer's codes
    are read, ``reach`` being the input codes that layer's inputs reach (pruning repairs the
    layer there: ``pruning.repair_layer``). Without
    ``build_tables``, a table that would read more than ``MAX_LOOKUP_BITS`` bits is not
    built (it could never be): the next layer's inputs are then taken to reach every
    code, which is still a proof.

    Returns
    -------
    certificate : AccumulatorCertificate
    codes : list of ``layer_codes`` triples, one per layer
    lookups : list of (table, offsets, shift), one per hidden layer
    """
    codes, lookups = [], []

    def codes_of(layer, reach):
        if prepare_layer is not None:
            prepare_layer(layer, reach)
        codes.append(layer_codes(net, layer))
        return codes[-1][:2]

    def tabulate(layer, certified):
        read = int(certified.bits.max()) - lookup_shift(net, certified, lookup_bits[layer])
        if read > MAX_LOOKUP_BITS and not build_tables:
            return None
        require_lookup_bits(read, f"fc{layer}'s table")
        lookups.append(table(net, layer, certified, codes[layer][2], lookup_bits[layer]))
        return lookups[-1]

    with net.eval_mode():
        certificate = certify_network(
            net.n_layers,
            codes_of,
            net.input_code_range,
            net.n_accum_bits,
            tabulate,
            net.activation_code_range,
        )
    return certificate, codes, lookups


def lookup_shift(net, layer_certificate: LayerCertificate, lookup_bits) -> int:
    """Low bits a hidden layer's table drops: those training drops (``rounded_lookups``),
    ``lsbs_to_remove(n_accum_bits, lookup_bits)``, whatever the layer's certified width,
    so the table reads the buckets the network learned around. A layer certified at
    ``bits`` bits, narrower than the bound, therefore reads ``bits - shift`` bits,
    fewer than ``lookup_bits`` (finer buckets than training's read the accumulator
    differently: on a breast_cancer fold at 3/3/12 with the fan-in rule, layers
    certified at 9-10 bits read at 5 bits scored 0.667, at training's shift 0.930).
    The shift stays below ``bits``: any larger one splits the interval at 0 alone, as
    this one does."""
    bits = int(layer_certificate.bits.max())
    return min(lsbs_to_remove(net.n_accum_bits, lookup_bits), max(bits - 1, 0))


def table(
    net, layer: int, layer_certificate: LayerCertificate, scale: np.ndarray, lookup_bits
) -> tuple[np.ndarray, np.ndarray, int]:
    """The lookup after hidden layer ``layer``: table, offsets, shift (call in eval mode).

    ``shift = _lookup_shift(...)``; row ``j`` holds, for each bucket
    ``floor(A / 2^shift)`` of the neuron's certified interval, the next input code of
    the centre of the bucket's accumulator values inside the interval (see
    ``to_integer_model``), in float32 as the torch forward evaluates it.
    """
    lo, hi = layer_certificate.lo[:, None], layer_certificate.hi[:, None]
    shift = lookup_shift(net, layer_certificate, lookup_bits)
    first = lo >> shift
    width = int(((hi >> shift) - first).max()) + 1
    next_scale = getattr(net, f"quant{layer + 1}").act_quant.scale().cpu()
    rows = max(1, _TABLE_CHUNK_ENTRIES // width)  # bounds the temporaries
    chunks = []
    for part in (slice(start, start + rows) for start in range(0, len(first), rows)):
        buckets = first[part] + np.arange(width)[None, :]
        # The centre of each bucket's accumulator values inside [lo, hi].
        bucket_low = np.maximum(buckets << shift, lo[part])
        bucket_high = np.minimum(((buckets + 1) << shift) - 1, hi[part])
        values = (bucket_low + np.maximum(bucket_high, bucket_low)) / 2.0
        real = torch.as_tensor(values * scale[part, None], dtype=torch.float32)
        unit_scale = torch.as_tensor(scale, dtype=torch.float32)
        activated = lookups.activate(net, layer, real.T, unit_scale, part).T
        next_codes = torch.round(activated / next_scale).double().numpy()
        chunks.append(np.clip(next_codes, *net.activation_code_range).astype(np.int64))
    return np.concatenate(chunks), first[:, 0].astype(np.int64), shift
