"""FHE cost against accuracy: ``python -m benchmarks.fhe_cost`` writes benchmarks/FHE_COST.md.

For breast_cancer and digits, the estimator is fitted at its defaults on each of the 5 folds
of the benchmark protocol (so training learns the default ``rounding_threshold_bits``), and
pruned with ``.prune(X, y, f)`` for ``f`` in 0.5 and 0.75 (half and a quarter of the table
lookups; fine-tuned likewise); every setting of ``rounding_threshold_bits`` (None, 7, 6, 5,
4) is then applied to those same fitted models with ``set_params`` (the integer model is
rebuilt, no refit): the default's row is the model ``fit`` returns, the others read it at
another width. Per setting: 5-fold accuracy,
accumulator bits, lookup bits, table lookups and programmable bootstraps per row, the
circuit's complexity, compile seconds, key generation seconds, evaluation-key megabytes
(serialized, compressed) and seconds per encrypted row (median over ``--rows`` rows,
encrypt + run + decrypt; ``--rows`` gives one count per dataset, ``0`` skips keys and
execution), on fold 0's model. Every
setting is checked: ``simulate`` against ``disable`` on fold 0's test rows and on 1,000
corner rows, ``execute`` against ``disable`` on the executed rows; the disagreements are
counted in the table. ``--prune`` and ``--rounding-threshold-bits`` measure a subset, e.g.
to time a few settings again on an idle machine:

    python -m benchmarks.fhe_cost --datasets breast_cancer --rows 5 --prune 0 0.75 \
        --rounding-threshold-bits 5 4 --output /tmp/FHE_COST_idle.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks.protocol import folds
from concrete_qnn import QNNClassifier

ROUNDING = (None, 7, 6, 5, 4)
PRUNE_FRACTIONS = (0.5, 0.75)
N_CORNER_ROWS = 1000
HERE = Path(__file__).resolve().parent


def corner_rows(model, n_rows: int = N_CORNER_ROWS) -> np.ndarray:
    """Rows (standardized units) whose every feature sits at its lowest or highest code."""
    integer = model.integer_model_
    low, high = integer.input_range
    pick = np.random.default_rng(0).random((n_rows, integer.n_features_in)) < 0.5
    return np.where(pick, low, high) * integer.input_scale


def fhe_cost(model, fold, n_rows: int) -> dict:
    """Compile, check and time ``model`` (already set to its rounding) on ``fold``."""
    start = time.perf_counter()
    model.compile(fold.X_train)
    compile_s = time.perf_counter() - start
    circuit = model.fhe_circuit_
    disagreements = 0
    for rows in (fold.X_test, corner_rows(model)):
        disagreements += int(
            np.sum(model.predict(rows, fhe="simulate") != model.predict(rows, fhe="disable"))
        )
    certificate = model.certificate_
    executed = {"keygen s": "-", "eval keys MB": "-", "s/row": "-"}
    if n_rows:
        start = time.perf_counter()
        circuit.keygen()
        executed["keygen s"] = round(time.perf_counter() - start, 1)
        executed["eval keys MB"] = round(len(circuit.circuit.keys.evaluation.serialize()) / 1e6)
        latencies = []
        for row in fold.X_test[:n_rows]:
            start = time.perf_counter()
            encrypted = model.predict(row[None, :], fhe="execute")
            latencies.append(time.perf_counter() - start)
            disagreements += int(np.sum(encrypted != model.predict(row[None, :])))
        executed["s/row"] = round(statistics.median(latencies), 2)
    return {
        "accumulator bits": certificate.max_bits,
        "lookup bits": max(layer.lookup_bits for layer in certificate.layers[:-1]),
        "lookups": circuit.n_table_lookups,
        "bootstraps": circuit.circuit.programmable_bootstrap_count,
        "complexity": f"{circuit.circuit.complexity:.2e}",
        "compile s": round(compile_s, 1),
        **executed,
        "disagreements": disagreements,
    }


def measure(name: str, n_rows: int, prune_fractions=(0.0, *PRUNE_FRACTIONS), rounding=ROUNDING):
    """Yield one table row per (pruning fraction, rounding) setting on dataset ``name``;
    fraction 0 is the fitted model itself."""
    data = folds(name)
    models = {fraction: [] for fraction in prune_fractions}
    for fold in data:
        model = QNNClassifier(random_state=0)  # trained for the default rounding
        model.fit(fold.X_train, fold.y_train)
        for fraction in prune_fractions:
            pruned = model.prune(fold.X_train, fold.y_train, fraction) if fraction else model
            models[fraction].append(pruned)
    for fraction, fitted in models.items():
        for bits in rounding:
            scores = [
                model.set_params(rounding_threshold_bits=bits).score(fold.X_test, fold.y_test)
                for model, fold in zip(fitted, data, strict=True)
            ]
            row = {
                "dataset": name,
                "pruned": fraction or "-",
                "rounding_threshold_bits": bits,
                "5-fold accuracy": round(float(np.mean(scores)), 4),
            }
            row.update(fhe_cost(fitted[0], data[0], n_rows))
            yield row


def report(
    rows: list[dict], command: str, n_rows: dict, minutes: float, done: bool, note: str
) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    status = f"Total time {minutes:.1f} min." if done else "Still running: partial table."
    return (
        "# FHE cost against accuracy\n\n"
        f"Generated by `{command}` (do not edit by hand). Estimator "
        "defaults (trained for the default `rounding_threshold_bits`), `random_state=0`, 5 "
        "folds of the benchmark protocol; `pruned` is `.prune(X, y, fraction)` of the same "
        "fitted models; each `rounding_threshold_bits` applied with `set_params` to the same "
        "fitted models (the default's row is the model `fit` returns). Cost "
        "columns on fold 0's model; s/row is the median over "
        f"{_rows_text(n_rows)} of encrypt + run + decrypt; disagreements count `simulate` vs "
        f"`disable` on fold 0's test rows and {N_CORNER_ROWS} corner rows plus `execute` vs "
        f"`disable` on the executed rows. Machine: {torch.get_num_threads()} torch thread(s), "
        f"CPU, load average {os.getloadavg()[0]:.1f} when this was written. {note}{status}\n\n"
        + "\n".join(lines)
        + "\n"
    )


def _rows_text(n_rows: dict) -> str:
    return ", ".join(f"{count} rows ({name})" for name, count in n_rows.items())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["breast_cancer", "digits"])
    parser.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=[3, 0],
        help="encrypted rows timed per setting, one count per dataset (0: no keys)",
    )
    parser.add_argument(
        "--prune",
        type=float,
        nargs="+",
        default=[0.0, *PRUNE_FRACTIONS],
        help="pruning fractions to measure (0: the fitted model itself)",
    )
    parser.add_argument(
        "--rounding-threshold-bits",
        type=lambda text: None if text == "None" else int(text),
        nargs="+",
        default=list(ROUNDING),
        help="settings of rounding_threshold_bits to measure (None or an integer)",
    )
    parser.add_argument("--output", type=Path, default=HERE / "FHE_COST.md")
    parser.add_argument("--note", default="", help="a sentence on the machine, for the header")
    args = parser.parse_args(argv)
    if len(args.rows) != len(args.datasets):
        parser.error(f"--rows needs one count per dataset ({len(args.datasets)}), got {args.rows}")
    n_rows = dict(zip(args.datasets, args.rows, strict=True))
    note = args.note.strip() + " " if args.note.strip() else ""
    command = " ".join(["python -m benchmarks.fhe_cost", *(sys.argv[1:] if argv is None else argv)])
    warnings.filterwarnings("ignore", message="make_pruning_permanent repaired")
    start = time.perf_counter()
    rows = []
    for name in args.datasets:
        for row in measure(name, n_rows[name], args.prune, args.rounding_threshold_bits):
            rows.append(row)
            print(row, flush=True)
            minutes = (time.perf_counter() - start) / 60
            args.output.write_text(report(rows, command, n_rows, minutes, False, note))
    minutes = (time.perf_counter() - start) / 60
    args.output.write_text(report(rows, command, n_rows, minutes, True, note))
    print(args.output.read_text())


if __name__ == "__main__":
    main()
