"""The network's state across processes and files: pickling, and loading a state dict.

Brevitas layers do not pickle (their quantizers are injector classes), so a network pickles
as its configuration, its pruned widths, its pruning state and its ``state_dict``, and is
rebuilt from them (``reduce`` / ``rebuild_network``). A state dict saved at another stage of
pruning (masks attached or folded, neurons removed) loads after the network takes its
structure (``adopt_structure``).
"""

from __future__ import annotations

import torch.nn.utils.parametrize as parametrize

from concrete_qnn.nn import lookups


def reduce(net) -> tuple:
    """``net.__reduce__``: rebuild with ``rebuild_network`` from the configuration and
    the state (widths, pruning flags and repairs, training flag, ``state_dict``)."""
    saved = {
        "widths": net.layer_widths(),
        "pruning_enabled": net.pruning_enabled,
        "neurons_pruned": net.neurons_pruned,
        "pruning_repairs": dict(net.pruning_repairs),
        "training": net.training,
        "state_dict": net.state_dict(),
    }
    return (rebuild_network, (net.get_config(), saved))


def rebuild_network(config: dict, saved: dict):
    """Inverse of ``reduce``: the ``SparseQuantNeuralNetwork`` that was pickled."""
    from concrete_qnn.nn.network import SparseQuantNeuralNetwork

    net = SparseQuantNeuralNetwork(**config)
    resize(net, saved["widths"])
    if saved["pruning_enabled"]:
        net.neurons_pruned = True  # the saved masks are loaded below, none is chosen now
        net.enable_pruning()
    net.neurons_pruned = saved["neurons_pruned"]
    net.pruning_repairs = saved["pruning_repairs"]
    net.load_state_dict(saved["state_dict"])
    tensors = list(saved["state_dict"].values())
    if tensors:  # Brevitas creates some parameters while loading: move after loading
        net.to(tensors[0].device)
    net.train(saved["training"])
    return net


def resize(net, widths: list[int]) -> None:
    """Replace every ``fc{i}`` of ``net`` whose shape differs from ``widths`` (``[input_dim,
    hidden..., n_outputs]``) by a fresh layer."""
    for i, fc in enumerate(net.linear_layers()):
        if (fc.in_features, fc.out_features) != (widths[i], widths[i + 1]):
            setattr(net, f"fc{i}", net.make_linear(widths[i], widths[i + 1]))
            if i < net.n_layers - 1 and fc.out_features != widths[i + 1]:
                setattr(net, f"act{i}", lookups.make_activation(net.config, widths[i + 1]))


def adopt_structure(net, state_dict: dict, strict: bool) -> None:
    """Give ``net`` the structure ``state_dict`` was saved with: masks attached or not, and
    the hidden widths of its weights (see ``SparseQuantNeuralNetwork.load_state_dict``).

    Raises
    ------
    ValueError
        If ``strict`` and the state dict holds another number of linear layers or was saved
        under the other weight scaling; ``net`` is unchanged then.
    """
    saved_layers = {key.split(".")[0] for key in state_dict if key.startswith("fc")}
    if strict and saved_layers != {f"fc{i}" for i in range(net.n_layers)}:
        raise ValueError(
            f"the state dict holds the linear layers {sorted(saved_layers)} and this "
            f"network has n_layers={net.n_layers}; nothing was loaded"
        )
    saved_chosen_scales = any(key.endswith(".weight_largest_code") for key in state_dict)
    if strict and saved_chosen_scales != (net.weight_scaling_used == "budget_mse"):
        raise ValueError(
            "the state dict was saved with weight_scaling="
            f"{'budget_mse' if saved_chosen_scales else 'max'!r} and this network uses "
            f"weight_scaling={net.weight_scaling_used!r}; nothing was loaded"
        )
    masked = "fc0.parametrizations.weight.original" in state_dict
    weight_key = "fc{}.parametrizations.weight.original" if masked else "fc{}.weight"
    keys = [weight_key.format(i) for i in range(net.n_layers)]
    if not all(key in state_dict for key in keys):
        return
    shapes = [tuple(state_dict[key].shape) for key in keys]
    widths = [shapes[0][1]] + [shape[0] for shape in shapes]
    if masked == net.pruning_enabled and widths == net.layer_widths():
        return
    for fc in net.linear_layers() if net.pruning_enabled else []:
        parametrize.remove_parametrizations(fc, "weight", leave_parametrized=False)
    resize(net, widths)
    if masked:
        net.neurons_pruned = True  # the saved masks are loaded by the caller
        net.enable_pruning()
    full = net.hidden_width
    rows = (f"fc{i}.parametrizations.weight.0.row_keep" for i in range(net.n_layers))
    net.neurons_pruned = any(width < full for width in widths[1:-1]) or any(
        bool((state_dict[key] == 0).any()) for key in rows if key in state_dict
    )
