"""The accuracy protocol of the benchmark suite: datasets, folds, scoring, float ceilings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn import datasets
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.utils import check_random_state

from concrete_qnn import QNNClassifier, QNNRegressor, SparseQuantNeuralNetwork

N_FOLDS = 5
SEED = 0


def _synthetic():
    return datasets.make_classification(
        n_samples=2000, n_features=20, n_informative=10, n_classes=3, random_state=0
    )


# name -> (loader returning X, y; task)
DATASETS = {
    "breast_cancer": (lambda: datasets.load_breast_cancer(return_X_y=True), "classification"),
    "digits": (lambda: datasets.load_digits(return_X_y=True), "classification"),
    "wine": (lambda: datasets.load_wine(return_X_y=True), "classification"),
    "synthetic": (_synthetic, "classification"),
    "diabetes": (lambda: datasets.load_diabetes(return_X_y=True), "regression"),
}

# Fixed accuracy targets (R^2 for diabetes) of the five benchmark datasets at 3/3/8 bits.
TARGETS = {
    "breast_cancer": 0.960,
    "digits": 0.955,
    "wine": 0.965,
    "synthetic": 0.880,
    "diabetes": 0.470,
}

# The extended suite: few features, curved boundaries, small row counts (issue #16).
EXTENDED_DATASETS = {
    "classification_150x4": (
        lambda: datasets.make_classification(
            150,
            n_features=4,
            n_informative=3,
            n_redundant=0,
            n_classes=3,
            n_clusters_per_class=1,
            random_state=3,
        ),
        "classification",
    ),
    "circles": (
        lambda: datasets.make_circles(1000, noise=0.1, factor=0.5, random_state=0),
        "classification",
    ),
    "gaussian_quantiles": (
        lambda: datasets.make_gaussian_quantiles(
            n_samples=1500, n_features=6, n_classes=3, random_state=0
        ),
        "classification",
    ),
    "hastie_10_2": (lambda: datasets.make_hastie_10_2(2000, random_state=0), "classification"),
    "friedman2": (
        lambda: datasets.make_friedman2(1000, noise=10.0, random_state=0),
        "regression",
    ),
    "friedman3": (
        lambda: datasets.make_friedman3(1000, noise=0.05, random_state=0),
        "regression",
    ),
}


def _checkerboard(n_samples=2000, cells=6, random_state=0):
    """Uniform points on a ``cells`` x ``cells`` board, labelled by the colour of their cell:
    many alternating regions in two dimensions."""
    X = check_random_state(random_state).uniform(0, cells, (n_samples, 2))
    return X, (np.floor(X[:, 0]) + np.floor(X[:, 1])).astype(int) % 2


def _swiss_roll():
    """The position along a swiss roll from the 3-D point: regression on a smooth manifold."""
    return datasets.make_swiss_roll(2000, noise=0.1, random_state=0)


# The grown suite (issue #30): the hardest kinds of small data found for a bounded network.
GROWN_DATASETS = {
    "checkerboard_6x6": (_checkerboard, "classification"),
    "clusters_4x4": (
        lambda: datasets.make_classification(
            2000,
            n_features=10,
            n_informative=6,
            n_redundant=2,
            n_classes=4,
            n_clusters_per_class=4,
            class_sep=1.5,
            random_state=0,
        ),
        "classification",
    ),
    "swiss_roll": (_swiss_roll, "regression"),
}

# make_classification and make_regression twins at 100,000 rows (benchmarks/SCALE.md's data).
LARGE_DATASETS = {
    "classification_100k": (
        lambda: datasets.make_classification(
            100_000, n_features=20, n_informative=10, n_classes=3, random_state=0
        ),
        "classification",
    ),
    "regression_100k": (
        lambda: datasets.make_regression(
            100_000, n_features=20, n_informative=10, noise=10.0, random_state=0
        ),
        "regression",
    ),
}
# Folds of the large datasets (the others: N_FOLDS).
LARGE_N_FOLDS = 3
ALL_DATASETS = {**DATASETS, **EXTENDED_DATASETS, **GROWN_DATASETS, **LARGE_DATASETS}


class FloatMLP(torch.nn.Module):
    """The float network of the same topology: Linear-ReLU blocks, no quantization."""

    def __init__(self, input_dim, n_outputs, hidden, n_layers=3):
        super().__init__()
        widths = [input_dim] + [hidden] * (n_layers - 1) + [n_outputs]
        layers = []
        for i in range(n_layers):
            layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
            if i < n_layers - 1:
                layers.append(torch.nn.ReLU())
        self.layers = torch.nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


@dataclass
class Fold:
    """One cross-validation fold, features (and a regression target) standardized with the
    training part's mean and standard deviation."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def n_folds(name: str) -> int:
    """``N_FOLDS``, or ``LARGE_N_FOLDS`` for the 100,000-row twins."""
    return LARGE_N_FOLDS if name in LARGE_DATASETS else N_FOLDS


def folds(name: str) -> list[Fold]:
    """The folds (``n_folds``): StratifiedKFold(shuffle, seed 0); KFold likewise for
    regression."""
    loader, task = ALL_DATASETS[name]
    X, y = loader()
    X = X.astype(np.float64)
    if task == "classification":
        splitter = StratifiedKFold(n_folds(name), shuffle=True, random_state=SEED)
    else:
        splitter = KFold(n_folds(name), shuffle=True, random_state=SEED)
        y = y.astype(np.float64)
    result = []
    for train, test in splitter.split(X, y):
        mean, std = X[train].mean(axis=0), X[train].std(axis=0)
        std[std == 0] = 1.0
        X_train, X_test = (X[train] - mean) / std, (X[test] - mean) / std
        y_train, y_test = y[train], y[test]
        if task == "regression":
            y_mean, y_std = y_train.mean(), y_train.std()
            y_train, y_test = (y_train - y_mean) / y_std, (y_test - y_mean) / y_std
        result.append(Fold(X_train, y_train, X_test, y_test))
    return result


@dataclass
class Result:
    """Scores (accuracy or R^2) per fold and what each fit reported."""

    scores: list[float] = field(default_factory=list)
    max_bits: list[int] = field(default_factory=list)
    certificate_holds: list[bool] = field(default_factory=list)
    certificates: list = field(default_factory=list)
    fit_seconds: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))


def evaluate_qnn(name: str, **params) -> Result:
    """Cross-validate the estimator (defaults, ``random_state=0``, overridden by params)."""
    task = ALL_DATASETS[name][1]
    estimator_class = QNNClassifier if task == "classification" else QNNRegressor
    result = Result()
    for fold in folds(name):
        model = estimator_class(random_state=SEED, **params)
        start = time.perf_counter()
        model.fit(fold.X_train, fold.y_train)
        result.fit_seconds.append(time.perf_counter() - start)
        result.scores.append(float(model.score(fold.X_test, fold.y_test)))
        certificate = model.certificate_
        result.max_bits.append(certificate.max_bits)
        result.certificate_holds.append(certificate.holds)
        result.certificates.append(certificate)
    return result


def hidden_width(n_features: int, **params) -> int:
    """Neurons per hidden layer of the estimator at its defaults overridden by ``params``,
    for ``n_features`` features (``SparseQuantNeuralNetwork.hidden_width``)."""
    settings = QNNClassifier(**params).get_params()
    module = {
        name.removeprefix("module__"): value
        for name, value in settings.items()
        if name.startswith("module__")
    }
    return SparseQuantNeuralNetwork(input_dim=n_features, n_outputs=1, **module).hidden_width


def float_ceiling(name: str, hidden: int) -> tuple[float, str]:
    """The better mean score of a float MLP (two hidden layers of ``hidden``) and a
    linear model, on the same folds; returns (score, which)."""
    task = ALL_DATASETS[name][1]
    if task == "classification":
        candidates = {
            "MLP": lambda: MLPClassifier(
                hidden_layer_sizes=(hidden, hidden), max_iter=500, random_state=SEED
            ),
            "linear": lambda: LogisticRegression(max_iter=5000),
        }
    else:
        candidates = {
            "MLP": lambda: MLPRegressor(
                hidden_layer_sizes=(hidden, hidden),
                max_iter=500,
                early_stopping=True,
                random_state=SEED,
            ),
            "linear": lambda: Ridge(),
        }
    means = {}
    for label, make in candidates.items():
        scores = [
            make().fit(fold.X_train, fold.y_train).score(fold.X_test, fold.y_test)
            for fold in folds(name)
        ]
        means[label] = float(np.mean(scores))
    best = max(means, key=means.get)
    return means[best], best
