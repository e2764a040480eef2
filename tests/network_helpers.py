"""Helpers for the network tests: Brevitas' own codes, reached codes, worst cases."""

import itertools

import numpy as np
import torch

from concrete_qnn.nn import lookups


def brevitas_layer_codes(net, layer):
    """Weight codes, bias codes and input codes of one layer, read off Brevitas itself.

    The bias codes come from the forward pass on an all-zero input (code 0), so they are
    what the network really adds, not what our own extraction believes.
    """
    net.eval()
    fc, quant = getattr(net, f"fc{layer}"), getattr(net, f"quant{layer}")
    with torch.no_grad():
        quant_weight = fc.quant_weight()
        input_scale = quant.act_quant.scale()
        unit = (quant_weight.scale.reshape(-1) * input_scale).double()
        at_zero = fc(quant(torch.zeros(1, fc.in_features)))[0].double()
    int_quant = quant.act_quant.fused_activation_quant_proxy.tensor_quant.int_quant
    width = quant.act_quant.bit_width()
    inputs = (int(int_quant.min_int(width)), int(int_quant.max_int(width)))
    bias = torch.round(at_zero / unit).long().tolist()
    return quant_weight.int().long().tolist(), bias, inputs, unit


def reached_codes(net, layer, neuron, unit, low, high):
    """(min, max) of the codes Brevitas' quantizer after ``layer`` gives to neuron
    ``neuron``'s activation of ``unit * A`` (its own learned function under
    ``learned_lookups``) over every accumulator ``A`` in ``[low, high]``: what the next
    layer's input reaches."""
    with torch.no_grad():
        values = torch.arange(int(low), int(high) + 1).double()
        scale = torch.zeros(getattr(net, f"fc{layer}").out_features)
        scale[neuron] = float(unit)
        real = lookups.activate(net, layer, (values * unit).float()[:, None], scale, [neuron])
        codes = getattr(net, f"quant{layer + 1}")(real).int()
    return int(codes.min()), int(codes.max())


def worst_case_bits(net):
    """Every neuron's worst-case signed bit-width over reachable input codes, in Python
    integers, of its accumulator and of its weighted sum before the bias (the FHE circuit
    holds both): layer 0's inputs reach Brevitas' input codes, a later layer's input ``j``
    the codes ``reached_codes`` gives over neuron ``j``'s interval."""
    bits, reach = [], None
    for layer in range(net.n_layers):
        weights, bias, (xmin, xmax), unit = brevitas_layer_codes(net, layer)
        reach = reach or [(xmin, xmax)] * len(weights[0])
        next_reach = []
        for j, (row, b) in enumerate(zip(weights, bias, strict=True)):
            pairs = list(zip(row, reach, strict=True))
            low = b + sum(min(w * lo, w * hi) for w, (lo, hi) in pairs)
            high = b + sum(max(w * lo, w * hi) for w, (lo, hi) in pairs)
            n = 1
            while not (-(2 ** (n - 1)) <= min(low, low - b) and max(high, high - b) < 2 ** (n - 1)):
                n += 1
            bits.append(n)
            if layer < net.n_layers - 1:
                next_reach.append(reached_codes(net, layer, j, unit[j], low, high))
        reach = next_reach
    return bits


def train_steps(net, n_features, steps=3, lr=0.05, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, n_features, generator=generator) * 2
    target = torch.randn(64, net.n_outputs, generator=generator)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        loss = (net(x) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return x


def assert_certificate_matches_enumeration(net, certificate):
    """Each input's reachable codes are Brevitas' own, and lo/hi of every neuron equal the
    extremes over all input code vectors inside them.

    Layer 0's inputs reach the input quantizer's codes; a later layer's input ``j`` reaches
    the codes that Brevitas' next quantizer gives to ``act(unit_j * A)`` for every ``A`` in
    neuron ``j``'s certified interval. Every hidden code the network computes, on every
    input code vector, lies in those ranges.
    """
    net.eval()
    reach = None
    for layer, layer_certificate in enumerate(certificate.layers):
        weights, bias, (xmin, xmax), unit = brevitas_layer_codes(net, layer)
        weights, bias = np.array(weights), np.array(bias)
        if reach is None:
            reach = [(xmin, xmax)] * weights.shape[1]
            first_inputs = np.array(
                list(itertools.product(range(xmin, xmax + 1), repeat=weights.shape[1]))
            )
            scale = float(net.quant0.act_quant.scale())
            with torch.no_grad():
                codes = net.quant0(torch.as_tensor(first_inputs * scale, dtype=torch.float32))
            np.testing.assert_array_equal(codes.int().numpy(), first_inputs)
            hidden = torch.as_tensor(first_inputs * scale, dtype=torch.float32)
        np.testing.assert_array_equal(layer_certificate.input_low, [low for low, _ in reach])
        np.testing.assert_array_equal(layer_certificate.input_high, [high for _, high in reach])
        all_inputs = np.array(list(itertools.product(*(range(lo, hi + 1) for lo, hi in reach))))
        sums = all_inputs @ weights.T + bias
        np.testing.assert_array_equal(layer_certificate.lo, sums.min(axis=0))
        np.testing.assert_array_equal(layer_certificate.hi, sums.max(axis=0))
        np.testing.assert_array_equal(layer_certificate.fan_in, (weights != 0).sum(axis=1))
        with torch.no_grad():
            quant = getattr(net, f"quant{layer}")
            hidden_codes = quant(hidden).int().numpy()
        assert np.all(hidden_codes >= layer_certificate.input_low)
        assert np.all(hidden_codes <= layer_certificate.input_high)
        if layer < net.n_layers - 1:
            with torch.no_grad():
                hidden = getattr(net, f"act{layer}")(getattr(net, f"fc{layer}")(quant(hidden)))
            reach = [
                reached_codes(
                    net, layer, j, unit[j], layer_certificate.lo[j], layer_certificate.hi[j]
                )
                for j in range(weights.shape[0])
            ]
