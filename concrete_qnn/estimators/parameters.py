"""The estimators' parameters: their defaults and the ``__init__`` that declares them."""

from __future__ import annotations

import torch

# Bits of the certified accumulator each table lookup reads (see benchmarks/FHE_COST.md).
DEFAULT_ROUNDING_THRESHOLD_BITS = 5

# Hidden neurons per feature. The module's (the peer's) 4 costs twice the encrypted lookups
# for nothing: 5-fold at 2 against 4, breast_cancer 0.9719/0.9701 (128 lookups, not 240),
# digits 0.9766/0.9755, synthetic 0.8850/0.8825 (benchmarks/SUITES.md at 2).
DEFAULT_HIDDEN_NEURONS_MULTIPLIER = 2

# Epochs of max_epochs="auto": 60, and 200 where the hidden lookups are learned, whose 33
# values per neuron keep improving past 60 epochs (5-fold, benchmarks/FRONTIER.md at 200
# against 60: the 6 x 6 checkerboard 0.897 against 0.872, within 0.0015 of its float
# ceiling; the Gaussian quantiles 0.846 against 0.823; the other five datasets of at most 8
# features within 0.007 either way). Data of more features keeps 60 (Hastie: 0.8725
# against 0.8715 at 200, benchmarks/LEVERS.md) and its fit time.
DEFAULT_MAX_EPOCHS = 60
LEARNED_LOOKUPS_MAX_EPOCHS = 200


def auto_max_epochs(learned_lookups_used: bool) -> int:
    """``max_epochs="auto"``: ``LEARNED_LOOKUPS_MAX_EPOCHS`` (200) for a network with
    learned lookups, else ``DEFAULT_MAX_EPOCHS`` (60)."""
    return LEARNED_LOOKUPS_MAX_EPOCHS if learned_lookups_used else DEFAULT_MAX_EPOCHS


def resolved_max_epochs(max_epochs, learned_lookups_used: bool) -> int:
    """The epochs a training call runs: ``auto_max_epochs`` for ``"auto"``, else
    ``max_epochs`` (validated before training)."""
    return auto_max_epochs(learned_lookups_used) if max_epochs == "auto" else int(max_epochs)


# Fewest neurons per hidden layer: 2 features times the multiplier 4 are too few to bend a
# boundary (make_circles 5-fold accuracy: 0.859 at 8 neurons, 0.959 at 64; benchmarks/SUITES.md).
DEFAULT_HIDDEN_NEURONS_MIN = 64


def estimator_init(default_criterion):
    """The estimators' ``__init__``: every parameter explicit (scikit-learn and ``inspect``
    read the defaults), ``criterion`` defaulting per estimator."""

    def __init__(
        self,
        module__n_layers=3,
        module__n_hidden_neurons_multiplier=DEFAULT_HIDDEN_NEURONS_MULTIPLIER,
        module__n_w_bits=3,
        module__n_a_bits=3,
        module__n_accum_bits=8,
        module__n_prune_neurons_percentage=0.0,
        module__activation_function=torch.nn.ReLU,
        module__quant_narrow=False,
        module__quant_signed=True,
        module__accumulator_rule="l1_budget",
        module__n_hidden_neurons_min=DEFAULT_HIDDEN_NEURONS_MIN,
        module__n_input_bits="auto",
        module__weight_scaling="auto",
        module__learned_lookups="auto",
        *,
        criterion=default_criterion,
        optimizer=torch.optim.AdamW,
        lr=0.002,
        max_epochs="auto",
        batch_size="auto",
        train_split=None,
        iterator_train__shuffle=True,
        optimizer__weight_decay=0.1,
        random_state=None,
        verbose=0,
        progress_bar=False,
        rounding_threshold_bits=DEFAULT_ROUNDING_THRESHOLD_BITS,
        **kwargs,
    ):
        module_params = {k: v for k, v in locals().items() if k.startswith("module__")}
        self._init_qnn(
            module_params,
            random_state,
            progress_bar,
            rounding_threshold_bits,
            dict(
                criterion=criterion,
                optimizer=optimizer,
                lr=lr,
                max_epochs=max_epochs,
                batch_size=batch_size,
                train_split=train_split,
                iterator_train__shuffle=iterator_train__shuffle,
                optimizer__weight_decay=optimizer__weight_decay,
                verbose=verbose,
                **kwargs,
            ),
        )

    return __init__
