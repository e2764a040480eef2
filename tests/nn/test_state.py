"""The network's state: state dicts saved at any stage of pruning load into any structure."""

import torch
from network_helpers import (
    train_steps,
)

from concrete_qnn import SparseQuantNeuralNetwork


def test_permanent_pruning_leaves_plain_layers_that_load_into_a_fresh_module():
    torch.manual_seed(0)
    net = SparseQuantNeuralNetwork(10, 3, 2)
    net.enable_pruning()
    x = train_steps(net, 10)
    net.make_pruning_permanent()
    assert not net.pruning_enabled
    keys = list(net.state_dict())
    assert not any(
        "parametrizations" in k or "weight_orig" in k or "weight_mask" in k for k in keys
    )
    fresh = SparseQuantNeuralNetwork(10, 3, 2)
    fresh.load_state_dict(net.state_dict())
    net.eval()
    fresh.eval()
    assert torch.equal(fresh(x), net(x))
    for fc in net.linear_layers():
        assert int((fc.quant_weight().int() != 0).sum(dim=1).max()) <= 7


def test_state_saved_with_masks_loads_into_any_structure_and_back():
    """skorch's Checkpoint saves while the masks are attached; LoadInitState loads that
    into a fresh network, load_params after fit into a folded, narrower one."""
    torch.manual_seed(0)
    net = SparseQuantNeuralNetwork(4, 3, 2, n_prune_neurons_percentage=0.5)
    net.enable_pruning()
    x = train_steps(net, 4)
    masked = {name: value.clone() for name, value in net.state_dict().items()}
    net.make_pruning_permanent()
    folded = net.state_dict()
    for target in (SparseQuantNeuralNetwork(4, 3, 2, n_prune_neurons_percentage=0.5), net):
        target.load_state_dict(masked)  # fresh and full width, or folded and narrower
        assert target.pruning_enabled and target.neurons_pruned
        assert target.layer_widths() == [4, 16, 16, 2]
        target.make_pruning_permanent()  # the loaded masks decide: no neuron chosen again
        assert target.layer_widths() == [4, 8, 8, 2]
        for name, value in folded.items():
            torch.testing.assert_close(target.state_dict()[name], value, rtol=0, atol=0)
    fresh = SparseQuantNeuralNetwork(4, 3, 2)
    fresh.load_state_dict(folded)  # plain and narrower: the layers follow the saved widths
    assert fresh.layer_widths() == [4, 8, 8, 2] and fresh.neurons_pruned
    net.eval()
    fresh.eval()
    assert torch.equal(fresh(x), net(x))
