"""Pruning: attach the accumulator rule's masks, then make them permanent and certified.

``enable_pruning`` attaches one mask per linear layer (``nn.rules``, ``nn.masks``) and prunes
a fraction of hidden neurons structurally; ``make_pruning_permanent`` folds the masks into the
weights, removes the pruned neurons, repairs any neuron a rounding tie left over the bound
(``repair_layer``) and returns the certificate, which then holds: after it, every neuron of
every layer fits ``n_accum_bits`` for every input code the quantizers can produce.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.utils.parametrize as parametrize

from concrete_qnn import convert
from concrete_qnn.accumulator import accumulator_bounds, signed_range
from concrete_qnn.certificate import AccumulatorCertificate
from concrete_qnn.nn.lookups import LearnedLookup


def enable_pruning(net) -> None:
    """Attach the masks of ``net.accumulator_rule``; with ``n_prune_neurons_percentage``,
    prune neurons.

    Every neuron then keeps, re-chosen at every forward pass, at most
    ``max_active_neurons()`` non-zero weights, its largest by magnitude (``"fan_in"``), or
    its largest weights whose codes fit the accumulator (``"l1_budget"``). The first time,
    the ``n_prune_neurons_percentage`` fraction of each hidden layer's neurons with the
    smallest weight L2 norm is pruned structurally. Idempotent.
    """
    if net.pruning_enabled:
        return
    layers = net.linear_layers()
    masks = net.config.rule.masks(net.config, layers)
    if not net.neurons_pruned and net.n_prune_neurons_percentage > 0:
        for fc, mask, next_mask in zip(layers[:-1], masks[:-1], masks[1:], strict=True):
            n_pruned = int(net.n_prune_neurons_percentage * fc.out_features)
            norms = fc.weight.detach().norm(dim=1)
            pruned = norms.argsort()[:n_pruned]
            mask.row_keep[pruned] = 0.0
            next_mask.col_keep[pruned] = 0.0
        net.neurons_pruned = True
    for fc, mask in zip(layers, masks, strict=True):
        parametrize.register_parametrization(fc, "weight", mask.to(fc.weight.device))


def make_pruning_permanent(net) -> AccumulatorCertificate:
    """Fold the masks into the weights, drop pruned neurons, enforce the certificate.

    Pruning is enabled first if it was not. Afterwards the ``fc{i}`` layers are plain
    Brevitas layers again (their ``state_dict`` loads into a module of the same widths),
    structurally pruned hidden neurons are removed, and every neuron is checked against
    ``n_accum_bits``, layer by layer over the codes its inputs reach
    (``SparseQuantNeuralNetwork.accumulator_certificate``). A neuron still over the bound is
    repaired by dropping its smallest weights (never needed under the fan-in cap) and
    clamping its bias (``repair_layer``); ``net.pruning_repairs`` counts both and a warning
    reports them.

    Returns
    -------
    AccumulatorCertificate
        The certificate of the pruned network; it holds.
    """
    enable_pruning(net)
    refresh_bias_units(net)
    layers = net.linear_layers()
    keep = [fc.parametrizations.weight[0].row_keep.bool() for fc in layers]
    for fc in layers:
        parametrize.remove_parametrizations(fc, "weight", leave_parametrized=True)
    for i in range(net.n_layers - 1):
        remove_neurons(net, i, keep[i])
    repairs = {"weights_dropped": 0, "biases_clamped": 0}

    def repair(layer, reach):
        repair_layer(net, layer, reach, repairs)

    certificate = convert.certify(net, [None] * (net.n_layers - 1), prepare_layer=repair)[0]
    net.pruning_repairs = repairs
    if any(repairs.values()):
        warnings.warn(
            "make_pruning_permanent repaired accumulators over "
            f"n_accum_bits={net.n_accum_bits}: {repairs}",
            stacklevel=3,
        )
    if not certificate.holds:  # pragma: no cover - the repair makes this unreachable
        raise RuntimeError(f"accumulator certificate violated after repair:\n{certificate}")
    return certificate


def refresh_bias_units(net) -> None:
    """Give each mask that counts the bias the bias of the current parameters.

    The forward pass sets ``bias_units`` as it goes; parameters loaded since (skorch's
    ``load_best``, ``load_params``) would otherwise be masked with the last forward pass's
    biases."""
    if not net.config.rule.counts_bias:
        return
    with net.eval_mode():
        for i, fc in enumerate(net.linear_layers()):
            scale = getattr(net, f"quant{i}").act_quant.scale()
            fc.parametrizations.weight[0].bias_units = (fc.bias / scale).detach()


def remove_neurons(net, layer: int, keep: torch.Tensor) -> None:
    """Remove the neurons ``~keep`` (bool (n_out,)) of hidden layer ``layer`` and the next
    layer's inputs from them."""
    if bool(keep.all()):
        return
    fc, next_fc = getattr(net, f"fc{layer}"), getattr(net, f"fc{layer + 1}")
    new_fc = net.make_linear(fc.in_features, int(keep.sum()))
    new_next = net.make_linear(int(keep.sum()), next_fc.out_features)
    with torch.no_grad():
        new_fc.weight.copy_(fc.weight[keep])
        new_fc.bias.copy_(fc.bias[keep])
        new_next.weight.copy_(next_fc.weight[:, keep])
        new_next.bias.copy_(next_fc.bias)
        if net.weight_scaling_used == "budget_mse":
            new_fc.weight_largest_code.copy_(fc.weight_largest_code[keep])
            new_next.weight_largest_code.copy_(next_fc.weight_largest_code)
    device = fc.weight.device
    activation = getattr(net, f"act{layer}")
    if isinstance(activation, LearnedLookup):
        setattr(net, f"act{layer}", activation.keep(keep))
    setattr(net, f"fc{layer}", new_fc.to(device))
    setattr(net, f"fc{layer + 1}", new_next.to(device))


def repair_layer(net, layer: int, reach: tuple, repairs: dict[str, int]) -> None:
    """Make every neuron of ``layer`` fit ``n_accum_bits`` over the input codes ``reach``.

    A neuron that does not fit loses its smallest weights while its weighted sum alone
    (before the bias, which the FHE circuit holds too) leaves the accumulator's range, then
    its bias is clamped into the range left; a neuron that fits is left alone. ``repairs``
    counts dropped weights and clamped biases."""
    accum_low, accum_high = signed_range(net.n_accum_bits)
    fc = getattr(net, f"fc{layer}")
    while True:
        weights, bias, bias_scale = convert.layer_codes(net, layer)
        low, high = accumulator_bounds(weights, np.zeros_like(bias), reach)
        over = np.flatnonzero((low < accum_low) | (high > accum_high))
        if over.size == 0:
            break
        with torch.no_grad():
            for row in over:
                magnitudes = fc.weight[row].abs().masked_fill(fc.weight[row] == 0, np.inf)
                fc.weight[row, int(magnitudes.argmin())] = 0.0
        repairs["weights_dropped"] += int(over.size)
    fitted = np.clip(bias, accum_low - low, accum_high - high)
    rows = np.flatnonzero(fitted != bias)
    if rows.size:
        with torch.no_grad():
            fc.bias[rows] = torch.as_tensor(
                fitted[rows] * bias_scale[rows], dtype=fc.bias.dtype, device=fc.bias.device
            )
        repairs["biases_clamped"] += int(rows.size)
