"""The benchmark suite: ``python -m benchmarks`` writes benchmarks/RESULTS.md and its plots.

Accuracy at 3/3/n_accum_bits over 5 folds of every dataset, against a float ceiling, for each
accumulator rule (``module__accumulator_rule``: the fan-in cap and the L1 budget, the latter
also with ``module__weight_scaling="budget_mse"``) on the same folds; fit time per epoch
against a plain float skorch MLP of the same topology, and of each rule against the fan-in
cap (side by side, interleaved, median over ``TIMING_ROUNDS`` rounds);
integer-model throughput. Needs the ``bench``
extra (matplotlib).
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from skorch import NeuralNetClassifier, NeuralNetRegressor

from benchmarks.protocol import (
    DATASETS,
    TARGETS,
    FloatMLP,
    evaluate_qnn,
    float_ceiling,
    folds,
    hidden_width,
)
from concrete_qnn import QNNClassifier, QNNRegressor
from concrete_qnn.estimators import auto_batch_size

ACCUM_BITS = (5, 6, 7, 8, 10, 12)
# Each rule's label and estimator parameters.
RULES = {
    "fan_in": {"module__accumulator_rule": "fan_in"},
    "l1_budget": {"module__accumulator_rule": "l1_budget", "module__weight_scaling": "max"},
    "l1_budget, budget_mse": {
        "module__accumulator_rule": "l1_budget",
        "module__weight_scaling": "budget_mse",
    },
}
# Rules measured at LOW_BITS with 2-bit weights and activations too (smaller codes).
LOW_BITS_RULES = ("l1_budget", "l1_budget, budget_mse")
LOW_BITS = 5
DEFAULT_RULE = inspect.signature(QNNClassifier).parameters["module__accumulator_rule"].default
HERE = Path(__file__).resolve().parent
THROUGHPUT_ROWS = 100_000
# Rounds of the timed fits (the float MLP and the QNN under each rule), one after the other.
# Two fits of one model on the same data took 0.40 and 0.52 s per epoch on this 2-core
# machine, so one round can misstate a ratio by a quarter.
TIMING_ROUNDS = 3


def epoch_seconds(name: str) -> dict[str, float]:
    """Seconds per epoch on fold 0 of the float skorch MLP (key "float") and of the QNN
    under each of ``RULES``: the median over ``TIMING_ROUNDS`` rounds, each fitting them all
    in turn (the rules in a rotated order), of each fit's median epoch."""
    fold = folds(name)[0]
    task = DATASETS[name][1]
    estimator = QNNClassifier if task == "classification" else QNNRegressor
    qnns = {rule: estimator(random_state=0, **params) for rule, params in RULES.items()}
    qnn = qnns["fan_in"]
    X = fold.X_train.astype(np.float32)
    y = fold.y_train if task == "classification" else fold.y_train.astype(np.float32)
    n_outputs = len(np.unique(y)) if task == "classification" else 1
    hidden = hidden_width(X.shape[1])
    common = {
        "optimizer": torch.optim.AdamW,
        "lr": qnn.lr,
        "max_epochs": qnn.max_epochs,
        "batch_size": auto_batch_size(len(X)) if qnn.batch_size == "auto" else qnn.batch_size,
        "train_split": None,
        "iterator_train__shuffle": True,
        "verbose": 0,
        "module__input_dim": X.shape[1],
        "module__n_outputs": n_outputs,
        "module__hidden": hidden,
    }
    if task == "classification":
        plain = NeuralNetClassifier(FloatMLP, criterion=torch.nn.CrossEntropyLoss, **common)
        y_plain = y.astype(np.int64)
    else:
        plain = NeuralNetRegressor(FloatMLP, **common)
        y_plain = y.reshape(-1, 1)
    rounds = {key: [] for key in ["float", *RULES]}
    rules = list(RULES)
    for round_index in range(TIMING_ROUNDS):
        torch.manual_seed(0)
        plain.fit(X, y_plain)
        rounds["float"].append(statistics.median(plain.history[:, "dur"]))
        # Each round starts the rules at the next one, so none is always timed first.
        shift = round_index % len(rules)
        for rule in rules[shift:] + rules[:shift]:
            qnns[rule].fit(X, y)
            rounds[rule].append(statistics.median(qnns[rule].history[:, "dur"]))
    return {key: statistics.median(values) for key, values in rounds.items()}


def throughput(name: str) -> tuple[float, float]:
    """Rows per second of the integer model and of the torch eval forward, 100,000 rows."""
    fold = folds(name)[0]
    task = DATASETS[name][1]
    model = (QNNClassifier if task == "classification" else QNNRegressor)(
        random_state=0, max_epochs=5
    ).fit(fold.X_train, fold.y_train)
    rows = np.random.default_rng(0).integers(0, len(fold.X_test), THROUGHPUT_ROWS)
    X = fold.X_test[rows].astype(np.float32)
    module = model.module_.eval()
    start = time.perf_counter()
    model.integer_model_.decision_outputs(X)
    integer_s = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        module(torch.as_tensor(X))
    torch_s = time.perf_counter() - start
    return THROUGHPUT_ROWS / integer_s, THROUGHPUT_ROWS / torch_s


def plot_accuracy(results, ceilings, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.6), squeeze=False)
    axes = axes[0]
    for axis, (name, by_rule) in zip(axes, results.items(), strict=True):
        lowest = 1.0
        for rule, by_bits in by_rule.items():
            bits = [b for b in ACCUM_BITS if b in by_bits]
            axis.plot(bits, [by_bits[b].mean for b in bits], "o-", label=f"QNN 3/3, {rule}")
            lowest = min([lowest] + [by_bits[b].mean for b in bits])
        axis.axhline(ceilings[name][0], color="gray", linestyle="--", label="float ceiling")
        axis.axhline(TARGETS[name], color="tab:red", linestyle=":", label="target at 8 bits")
        axis.set_title(name)
        axis.set_xlabel("n_accum_bits")
        axis.set_xticks(ACCUM_BITS)
        axis.set_ylabel("R^2" if DATASETS[name][1] == "regression" else "accuracy")
        axis.set_ylim(max(0.0, lowest - 0.05), 1.0)
    axes[0].legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_timing(timing, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(timing)
    ratios = [timing[name]["fan_in"] / timing[name]["float"] for name in names]
    figure, axis = plt.subplots(figsize=(6, 3.2))
    axis.bar(names, ratios, color="tab:blue")
    axis.set_ylabel("QNN / float seconds per epoch")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_results(results, low_bits, ceilings, timing, speeds, seconds: float, jobs: int) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks` (do not edit by hand). 5-fold cross-validation:",
        "`StratifiedKFold(5, shuffle=True, random_state=0)` (`KFold`, same arguments, for",
        "diabetes); features standardized with each training fold's mean and standard",
        "deviation, the diabetes target likewise; score = accuracy, or R^2 on the standardized",
        "target; mean over folds. Estimator defaults (3 layers of max(64, 2 x features)",
        "neurons, 3-bit weights and activations, `rounding_threshold_bits=5`),",
        "`random_state=0`. Every fitted model's certificate was checked.",
        f"Machine: CPU; accuracies measured in {jobs} process(es) of "
        f"{1 if jobs > 1 else torch.get_num_threads()} torch thread(s), timings alone with "
        f"{torch.get_num_threads()}. Total time {seconds / 60:.1f} min.",
        "",
        f"## Accuracy at 3/3/8 bits (default rule: {DEFAULT_RULE})",
        "",
        "| dataset | QNN (5-fold mean) | folds | target | float ceiling | max accumulator bits |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, by_rule in results.items():
        result = by_rule[DEFAULT_RULE][8]
        verdict = "met" if result.mean >= TARGETS[name] else "NOT met"
        lines.append(
            f"| {name} | {result.mean:.4f} | {' '.join(f'{s:.3f}' for s in result.scores)} | "
            f">= {TARGETS[name]:.3f} ({verdict}) | {ceilings[name][0]:.4f} "
            f"({ceilings[name][1]}) | {max(result.max_bits)} |"
        )
    lines += [
        "",
        "## Accuracy against the accumulator bound",
        "",
        "Each rule on the same folds (`module__accumulator_rule`). `fan_in`: at most",
        "`max_active_neurons()` weights per neuron; at 3-bit weights and activations one",
        "product reaches 16, more than a 5-bit accumulator holds (15), so it refuses 5 bits.",
        "`l1_budget`: per neuron, the largest weights whose codes, weighted by each input's",
        "reachable codes, fit with the bias, at Brevitas' max-abs scale (the largest weight",
        "takes the extreme code). `l1_budget, budget_mse` (`module__weight_scaling`): each",
        "neuron's largest weight takes the code whose L1-budget selection leaves the smallest",
        "squared weight error, so where the bound is tight coarser codes fit more inputs;",
        'its inputs (`module__n_input_bits="auto"`) leave room for four weights of code +1',
        "per neuron (3 bits at 5-bit bounds, 4 at 6, at most 8); `l1_budget`'s follow the",
        "max-abs scale (2 bits at 5 and 6 bits), `fan_in`'s are 3-bit. The estimators'",
        'default (`module__weight_scaling="auto"`) is the `l1_budget, budget_mse` row up',
        "to 7 bits and the `l1_budget` row from 8 bits on.",
        "The certificate reads reachable input codes for all. Every column keeps the",
        "default `rounding_threshold_bits=5`: each lookup",
        "drops `n_accum_bits - 5` low bits (7 at 12 bits), in training and in the tables",
        "alike, so wider bounds also mean coarser lookups.",
        "",
        "![accuracy against n_accum_bits](accuracy_vs_accum_bits.png)",
        "",
        "| dataset | rule | " + " | ".join(f"{b} bits" for b in ACCUM_BITS) + " |",
        "| --- | --- |" + " --- |" * len(ACCUM_BITS),
    ]
    for name, by_rule in results.items():
        for rule, by_bits in by_rule.items():
            cells = []
            for bits in ACCUM_BITS:
                if bits not in by_bits:
                    cells.append("refused")
                    continue
                result = by_bits[bits]
                holds = all(result.certificate_holds) and max(result.max_bits) <= bits
                cells.append(f"{result.mean:.4f}" + ("" if holds else " (certificate FAILED)"))
            lines.append(f"| {name} | {rule} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"At {LOW_BITS} bits with 2-bit weights and activations:",
        "",
        "| dataset | rule | 5-fold mean | folds | float ceiling |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, by_rule in low_bits.items():
        for rule, result in by_rule.items():
            lines.append(
                f"| {name} | {rule} | {result.mean:.4f} | "
                f"{' '.join(f'{s:.3f}' for s in result.scores)} | {ceilings[name][0]:.4f} |"
            )
    lines += [
        "",
        "## Fit time per epoch",
        "",
        "Seconds per epoch on fold 0 of the QNN (fan-in rule), a plain float skorch MLP of the",
        "same topology, optimizer, learning rate, batch size and epochs, and the QNN under the",
        f"other rules: {TIMING_ROUNDS} rounds, each fitting them all one after the other",
        "(nothing else running); each figure is the median over rounds of a fit's median epoch.",
        "Budget: each rule within 1.2x the fan-in rule's time.",
        "",
        "![fit time ratio](fit_time_ratio.png)",
        "",
        "| dataset | QNN s/epoch | float s/epoch | QNN / float | "
        + " | ".join(f"{rule} s/epoch | / fan_in" for rule in list(RULES)[1:])
        + " |",
        "| --- | --- | --- | --- |" + " --- | --- |" * (len(RULES) - 1),
    ]
    for name, seconds_by in timing.items():
        qnn_s, float_s = seconds_by["fan_in"], seconds_by["float"]
        cells = [
            f"{seconds_by[rule]:.4f} | {seconds_by[rule] / qnn_s:.2f}" for rule in list(RULES)[1:]
        ]
        lines.append(
            f"| {name} | {qnn_s:.4f} | {float_s:.4f} | {qnn_s / float_s:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "## Integer-model throughput",
        "",
        f"{THROUGHPUT_ROWS:,} rows predicted by the integer model (numpy) and by the torch",
        "eval forward of the same module, one run each.",
        "",
        "| dataset | integer model rows/s | torch forward rows/s |",
        "| --- | --- | --- |",
    ]
    for name, (integer_rate, torch_rate) in speeds.items():
        lines.append(f"| {name} | {integer_rate:,.0f} | {torch_rate:,.0f} |")
    return "\n".join(lines) + "\n"


def accuracy_settings() -> list[tuple[str, dict]]:
    """The (rule, bits or "low", estimator parameters) of every accuracy measurement of a
    dataset: each rule at each of ``ACCUM_BITS``, then ``LOW_BITS_RULES`` at 2/2/``LOW_BITS``
    ("low")."""
    settings = [
        (rule, bits, {"module__n_accum_bits": bits, **params})
        for rule, params in RULES.items()
        for bits in ACCUM_BITS
    ]
    two_bits = {"module__n_w_bits": 2, "module__n_a_bits": 2, "module__n_accum_bits": LOW_BITS}
    return [*settings, *((rule, "low", {**two_bits, **RULES[rule]}) for rule in LOW_BITS_RULES)]


def _evaluate(name: str, params: dict, threads: int | None):
    """``evaluate_qnn`` in a worker process: its result, or the ValueError of a bound that
    fits not even one weight."""
    if threads is not None:
        torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    try:
        return evaluate_qnn(name, **params)
    except ValueError as error:
        return error


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--output", type=Path, default=HERE)
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes for the accuracy measurements (joblib), each with one torch thread "
        "when more than 1; timings always run alone afterwards",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    tasks = [(name, *setting) for name in args.datasets for setting in accuracy_settings()]
    outcomes = Parallel(n_jobs=args.jobs, return_as="generator")(  # printed as they come
        delayed(_evaluate)(name, params, 1 if args.jobs > 1 else None)
        for name, _, _, params in tasks
    )
    results = {name: {rule: {} for rule in RULES} for name in args.datasets}
    low_bits = {name: {} for name in args.datasets}
    ceilings, timing, speeds = {}, {}, {}
    for (name, rule, bits, _), outcome in zip(tasks, outcomes, strict=True):
        if isinstance(outcome, ValueError):  # the bound fits not even one weight: say so
            print(f"{name} {rule} {bits} bits: {outcome}", flush=True)
        elif bits == "low":
            low_bits[name][rule] = outcome
            print(f"{name} {rule} 2/2/{LOW_BITS}: {outcome.mean:.4f}", flush=True)
        else:
            results[name][rule][bits] = outcome
            print(f"{name} {rule} {bits} bits: {outcome.mean:.4f} {outcome.scores}", flush=True)
    for name in args.datasets:
        n_features = folds(name)[0].X_train.shape[1]
        ceilings[name] = float_ceiling(name, hidden=hidden_width(n_features))
        timing[name] = epoch_seconds(name)
        speeds[name] = throughput(name)
        print(f"{name}: ceiling {ceilings[name]}, epoch s {timing[name]}", flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    plot_accuracy(results, ceilings, args.output / "accuracy_vs_accum_bits.png")
    plot_timing(timing, args.output / "fit_time_ratio.png")
    seconds = time.perf_counter() - start
    text = write_results(results, low_bits, ceilings, timing, speeds, seconds, args.jobs)
    (args.output / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
