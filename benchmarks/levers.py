"""Cheap accuracy levers, one at a time, on the data the defaults leave short of target.

Each lever changes one thing from the estimator's defaults at 60 epochs (``BASE``: the
defaults before ``max_epochs="auto"``, which this benchmark's ``200 epochs`` row led to;
``random_state=0``) and is scored on the benchmark's folds (``protocol.folds``:
StandardScaler fitted on each training part) against the float ceiling that
``benchmarks.frontier`` stored in ``frontier.json``:

- ``distillation``: a float ``MLPClassifier`` of the QNN's hidden sizes is fitted on the
  training part first (the float ceiling's model); the QNN is then a ``QNNRegressor``
  trained on the teacher's logits (its log-probabilities, clipped at 1e-4 and centred per
  row) with the mean squared error, as in Ba and Caruana 2014 ("Do Deep Nets Really Need
  to be Deep?"), and predicts the class of its largest output;
- ``200 epochs`` (the defaults train 60, on a cosine schedule);
- ``warm restarts``: SGDR's schedule (Loshchilov and Hutter 2017), PyTorch's
  ``CosineAnnealingWarmRestarts(T_0=20)`` through skorch's ``LRScheduler``: three cosine
  cycles of 20 epochs;
- ``quantile inputs``: scikit-learn's ``QuantileTransformer(output_distribution="normal")``
  then ``StandardScaler`` before the QNN, a per-feature monotone map a client could apply
  before encryption;
- ``first layer at the hidden bits``: ``module__n_input_bits=3``, the hidden codes'
  bit-width, where the defaults (``"auto"``) give the first layer wider input codes.

Run with ``python -m benchmarks.levers [--datasets ...] [--folds 5] [--jobs 2]``; it writes
``benchmarks/LEVERS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.protocol import (
    ALL_DATASETS,
    LARGE_DATASETS,
    N_FOLDS,
    SEED,
    folds,
    hidden_width,
)

HERE = Path(__file__).parent
REPORT = HERE / "LEVERS.md"
STORE = HERE / "frontier.json"  # the float ceilings
DEFAULT_DATASETS = ("gaussian_quantiles", "hastie_10_2", "checkerboard_6x6")
LEVERS = (
    "defaults",
    "distillation",
    "200 epochs",
    "warm restarts",
    "quantile inputs",
    "first layer at the hidden bits",
)
MIN_PROBABILITY = 1e-4
BASE = {"max_epochs": 60}  # every lever's starting point
TARGET_GAP = 0.02  # accuracy, as in benchmarks.frontier


def _teacher_logits(teacher, X) -> np.ndarray:
    """The teacher's log-probabilities, clipped at ``MIN_PROBABILITY``, centred per row."""
    log_p = np.log(np.clip(teacher.predict_proba(X), MIN_PROBABILITY, None))
    return (log_p - log_p.mean(axis=1, keepdims=True)).astype(np.float32)


def fold_score(lever: str, fold) -> float:
    """Accuracy of ``lever``'s model on one fold."""
    import torch
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import QuantileTransformer, StandardScaler
    from skorch.callbacks import LRScheduler

    from concrete_qnn import QNNClassifier, QNNRegressor

    X_train, y_train = fold.X_train.astype(np.float32), fold.y_train
    X_test, y_test = fold.X_test.astype(np.float32), fold.y_test
    if lever == "distillation":
        hidden = hidden_width(X_train.shape[1])
        teacher = MLPClassifier(
            hidden_layer_sizes=(hidden, hidden), max_iter=500, random_state=SEED
        ).fit(X_train, y_train)
        student = QNNRegressor(random_state=SEED, **BASE)
        student.fit(X_train, _teacher_logits(teacher, X_train))
        predicted = teacher.classes_[student.predict(X_test).argmax(axis=1)]
        return float(np.mean(predicted == y_test))
    params = {
        "defaults": {},
        "200 epochs": {"max_epochs": 200},
        "warm restarts": {
            "callbacks": [
                LRScheduler(policy=torch.optim.lr_scheduler.CosineAnnealingWarmRestarts, T_0=20)
            ]
        },
        "quantile inputs": {},
        "first layer at the hidden bits": {"module__n_input_bits": 3},
    }[lever]
    model = QNNClassifier(random_state=SEED, **{**BASE, **params})
    if lever == "quantile inputs":
        quantiles = QuantileTransformer(
            n_quantiles=min(1000, len(X_train)), output_distribution="normal", random_state=SEED
        )
        model = make_pipeline(quantiles, StandardScaler(), model)
    model.fit(X_train, y_train)
    return float(model.score(X_test, y_test))


def measure(name: str, lever: str, n_folds: int) -> dict:
    """Fold scores and fit seconds of ``lever`` on ``name`` (one torch thread)."""
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = [fold_score(lever, fold) for fold in folds(name)[:n_folds]]
    return {"scores": scores, "seconds": time.perf_counter() - start}


def report(results: dict, datasets, n_folds: int, command: str) -> str:
    ceilings = json.loads(STORE.read_text())
    lines = [
        "# Accuracy levers, one at a time",
        "",
        f"Generated by `{command}` (do not edit by hand); see `benchmarks/levers.py` for each",
        f"lever. Accuracy: mean over {n_folds} of the benchmark's {N_FOLDS} folds"
        + ("" if n_folds == N_FOLDS else " (fewer folds: differences of a point are noise)")
        + "; change: the lever's",
        "score minus the defaults' (every lever starts from the estimator's defaults at 60",
        "epochs); gap: the float ceiling (from `frontier.json`) minus the score, the target",
        f"at most {TARGET_GAP}. Machine: {os.cpu_count()} CPU(s), one torch thread per process.",
        "",
    ]
    for name in datasets:
        ceiling = ceilings[f"ceiling | {name}"]
        base = np.mean(results[name, "defaults"]["scores"])
        lines += [
            f"## {name}",
            "",
            f"Float ceiling {ceiling['ceiling']:.4f} ({ceiling['ceiling model']}).",
            "",
            "| lever | accuracy | folds | change | gap | target met | fit s (all folds) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for lever in LEVERS:
            entry = results[name, lever]
            score = float(np.mean(entry["scores"]))
            gap = ceiling["ceiling"] - score
            lines.append(
                f"| {lever} | {score:.4f} | "
                + " ".join(f"{s:.3f}" for s in entry["scores"])
                + f" | {score - base:+.4f} | {gap:+.4f} | "
                + ("yes" if gap <= TARGET_GAP + 1e-9 else "no")
                + f" | {entry['seconds']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    classification = [  # of 5 folds: not the 100,000-row twins
        name
        for name, (_, task) in ALL_DATASETS.items()
        if task == "classification" and name not in LARGE_DATASETS
    ]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=list(DEFAULT_DATASETS),
        help="classification datasets of benchmarks.protocol (default: "
        f"{' '.join(DEFAULT_DATASETS)}; any of: {' '.join(classification)})",
    )
    parser.add_argument(
        "--folds", type=int, default=N_FOLDS, help=f"the first 1 to {N_FOLDS} folds (default all)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    args = parser.parse_args(argv)
    refused = [name for name in args.datasets if name not in classification]
    if refused:
        parser.error(f"not a classification dataset of benchmarks.protocol: {' '.join(refused)}")
    if not 1 <= args.folds <= N_FOLDS or args.jobs < 1:
        parser.error(f"--folds takes 1 to {N_FOLDS} and --jobs at least 1")
    tasks = [(name, lever) for name in args.datasets for lever in LEVERS]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {task: pool.submit(measure, *task, args.folds) for task in tasks}
        results = {}
        for task, future in futures.items():
            results[task] = future.result()
            print(task, results[task], flush=True)
    command = "python -m benchmarks.levers " + " ".join(sys.argv[1:] if argv is None else argv)
    REPORT.write_text(report(results, args.datasets, args.folds, command.strip()))


if __name__ == "__main__":
    main()
