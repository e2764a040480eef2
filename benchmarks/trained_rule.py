"""The trained accumulator rule ("a2q") against the default ("l1_budget"), side by side.

Accuracy, fit time per epoch and the repairs ``make_pruning_permanent`` needed, on the
benchmark's folds (``protocol.folds``: StandardScaler fitted on each training part), the
estimators' defaults except the rule and ``n_accum_bits``; the rules alternate within each
fold so that both see the same machine load. Run with one thread:

    OMP_NUM_THREADS=1 python -m benchmarks.trained_rule [--folds 3] [--datasets ...]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from benchmarks.protocol import SEED, folds
from concrete_qnn import QNNClassifier

RULES = ("l1_budget", "a2q")


def run(datasets, accum_bits, n_folds):
    rows = []
    for name in datasets:
        for bits in accum_bits:
            scores = {rule: [] for rule in RULES}
            per_epoch = {rule: [] for rule in RULES}
            repairs = {rule: 0 for rule in RULES}
            holds = {rule: True for rule in RULES}
            for fold in folds(name)[:n_folds]:
                for rule in RULES:
                    model = QNNClassifier(
                        random_state=SEED,
                        module__accumulator_rule=rule,
                        module__n_accum_bits=bits,
                    )
                    start = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model.fit(fold.X_train, fold.y_train)
                    seconds = time.perf_counter() - start
                    per_epoch[rule].append(seconds / len(model.history))
                    scores[rule].append(float(model.score(fold.X_test, fold.y_test)))
                    repairs[rule] += sum(model.module_.pruning_repairs.values())
                    holds[rule] &= bool(model.certificate_.holds)
                    holds[rule] &= model.certificate_.max_bits <= bits
            base = np.mean(per_epoch["l1_budget"])
            for rule in RULES:
                rows.append(
                    (
                        name,
                        bits,
                        rule,
                        np.mean(scores[rule]),
                        np.std(scores[rule]),
                        1000 * np.mean(per_epoch[rule]),
                        np.mean(per_epoch[rule]) / base,
                        repairs[rule],
                        holds[rule],
                    )
                )
                print(
                    f"| {name} | {bits} | {rule} | {rows[-1][3]:.4f} +- {rows[-1][4]:.4f} | "
                    f"{rows[-1][5]:.1f} | {rows[-1][6]:.2f}x | {repairs[rule]} | {holds[rule]} |",
                    flush=True,
                )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["breast_cancer", "digits"])
    parser.add_argument("--accum-bits", nargs="+", type=int, default=[6, 8])
    parser.add_argument("--folds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(
        f"{args.folds} of the benchmark's folds, QNNClassifier defaults but the rule and "
        "n_accum_bits; time per epoch relative to l1_budget's\n"
    )
    print(
        "| dataset | n_accum_bits | rule | accuracy | ms / epoch | time ratio | repairs "
        "| certificate |"
    )
    print("|---|---|---|---|---|---|---|---|")
    run(args.datasets, args.accum_bits, args.folds)


if __name__ == "__main__":
    main()
