"""The peer's encrypted cost on breast_cancer, for the side-by-side in FHE_COST.md.

Runs in a throwaway environment with Concrete ML (never a dependency of this project):

    python3 -m venv /tmp/peer-venv && /tmp/peer-venv/bin/pip install concrete-ml==1.9.0
    /tmp/peer-venv/bin/python benchmarks/peer_fhe_cost.py

Concrete ML's ``NeuralNetClassifier`` at its defaults except
``module__n_layers=3, module__n_w_bits=3, module__n_a_bits=3, module__n_accum_bits=8``
(the same 3/3/8 as our defaults) and ``verbose=0``; with ``--own-defaults``, at its own
defaults but ``module__n_layers=3`` (4-bit weights and activations, 32-bit accumulator
bound: what its users get) for ``benchmarks.frontier``. On ``--dataset`` (breast_cancer, the
default, or digits), on the same 5 folds as
``benchmarks.protocol`` (``StratifiedKFold(5, shuffle=True, random_state=0)``, features
standardized with each training part's mean and standard deviation): 5-fold accuracy in the
clear, and on fold 0's model, compiled on its training rows: circuit bit-width, table
lookups, programmable bootstraps, complexity, compile s, keygen s, evaluation-key MB
(serialized) and s/row (median over 3 rows of encrypt + run + decrypt), plus the
disagreements of ``simulate`` and ``execute`` with the clear model on fold 0's test rows.
Prints one markdown table row in FHE_COST.md's columns, or with ``--json`` the row as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from concrete.ml.sklearn import NeuralNetClassifier
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import StratifiedKFold

N_ROWS = 3
SETTINGS = dict(module__n_layers=3, module__n_w_bits=3, module__n_a_bits=3, module__n_accum_bits=8)
OWN_DEFAULTS = dict(module__n_layers=3)
LOADERS = {"breast_cancer": load_breast_cancer, "digits": load_digits}


def folds(dataset):
    X, y = LOADERS[dataset](return_X_y=True)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
        mean, std = X[train].mean(axis=0), X[train].std(axis=0)
        std[std == 0] = 1.0
        yield (X[train] - mean) / std, y[train], (X[test] - mean) / std, y[test]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(LOADERS), default="breast_cancer")
    parser.add_argument("--own-defaults", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    settings = OWN_DEFAULTS if args.own_defaults else SETTINGS
    scores, models = [], []
    for X_train, y_train, X_test, y_test in folds(args.dataset):
        model = NeuralNetClassifier(verbose=0, **settings)
        model.fit(X_train.astype(np.float32), y_train)
        scores.append(float(np.mean(model.predict(X_test.astype(np.float32)) == y_test)))
        models.append((model, X_train.astype(np.float32), X_test.astype(np.float32)))
    model, X_train, X_test = models[0]
    start = time.perf_counter()
    circuit = model.compile(X_train)
    compile_s = time.perf_counter() - start
    clear = model.predict(X_test)
    disagreements = int(np.sum(model.predict(X_test, fhe="simulate") != clear))
    start = time.perf_counter()
    circuit.keygen()
    keygen_s = time.perf_counter() - start
    keys_mb = len(circuit.keys.evaluation.serialize()) / 1e6
    latencies = []
    for row in X_test[:N_ROWS]:
        start = time.perf_counter()
        encrypted = model.predict(row[None, :], fhe="execute")
        latencies.append(time.perf_counter() - start)
        disagreements += int(np.sum(encrypted != model.predict(row[None, :])))
    row = {
        "dataset": args.dataset,
        "pruned": "Concrete ML 1.9",
        "rounding_threshold_bits": "its default",
        "5-fold accuracy": round(float(np.mean(scores)), 4),
        "folds": [round(score, 4) for score in scores],
        "accumulator bits": circuit.graph.maximum_integer_bit_width(),
        "lookup bits": "-",
        "lookups": "-",
        "bootstraps": circuit.programmable_bootstrap_count,
        "complexity": f"{circuit.complexity:.2e}",
        "compile s": round(compile_s, 1),
        "keygen s": round(keygen_s, 1),
        "eval keys MB": round(keys_mb),
        "s/row": round(statistics.median(latencies), 2),
        "disagreements": disagreements,
    }
    if args.json:
        print(json.dumps(row))
        return
    del row["folds"]
    print("| " + " | ".join(str(value) for value in row.values()) + " |")


if __name__ == "__main__":
    main()
