"""The accuracy-latency frontier: ``python -m benchmarks.frontier`` writes FRONTIER.md.

Every candidate setting (``CANDIDATES``: accumulator bits, learned lookups) on every dataset
of the benchmark: the five, the extended suite, the grown suite (``protocol.GROWN_DATASETS``:
a 6 x 6 checkerboard, four clusters per class, a swiss roll) and the 100,000-row twins
(``protocol.LARGE_DATASETS``). Per dataset and setting:

1. accuracy: the score of each fold of the benchmark protocol (5 folds, 3 at 100,000 rows),
   ``random_state=0``, every certificate checked (at 100,000 rows, ``LARGE_CANDIDATES``
   only), fit seconds per epoch; and the float ceiling of ``protocol.float_ceiling`` on the
   same folds (the better of an MLP of the QNN's hidden sizes and a linear model; at
   100,000 rows the MLP is ``MLPClassifier`` / ``MLPRegressor``);
2. encrypted cost, on fold 0's model: table lookups and programmable bootstraps per row,
   concrete's complexity, compile seconds; ``simulate`` against ``disable`` on up to 1,000
   test rows and 1,000 corner rows; and for breast_cancer and digits, key generation and
   seconds per encrypted row (median over 3 rows, encrypt + run + decrypt, ``execute``
   checked against ``disable``): ``benchmarks.fhe_cost.fhe_cost``;
3. with ``--peer-python`` (a throwaway environment holding Concrete ML 1.9, see
   ``benchmarks/peer_fhe_cost.py``), Concrete ML's ``NeuralNetClassifier`` at its own
   defaults (``module__n_layers=3``) on breast_cancer and digits, its s/row measured right
   after ours, in the same run.

Step 1 runs ``--jobs`` processes of one torch thread; steps 2 and 3 run alone, one after
the other, so the seconds per row compare. Each result is kept in ``frontier.json`` as it
comes (``--resume`` skips those already there); FRONTIER.md and frontier.png are written
from it.

    python -m benchmarks.frontier --jobs 2 --peer-python /tmp/peer-venv/bin/python
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pickle
import shlex
import subprocess
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.protocol import (
    ALL_DATASETS,
    DATASETS,
    EXTENDED_DATASETS,
    GROWN_DATASETS,
    LARGE_DATASETS,
    SEED,
    Fold,
    float_ceiling,
    folds,
    hidden_width,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "frontier.json"
REPORT = HERE / "FRONTIER.md"
PLOT = HERE / "frontier.png"

# name -> estimator parameters over the defaults.
_EPOCHS_60 = {"max_epochs": 60}
CANDIDATES = {
    "8 bits": {"module__n_accum_bits": 8, "module__learned_lookups": False, **_EPOCHS_60},
    "7 bits": {"module__n_accum_bits": 7, "module__learned_lookups": False, **_EPOCHS_60},
    "6 bits": {"module__n_accum_bits": 6, "module__learned_lookups": False, **_EPOCHS_60},
    "8 bits, learned lookups": {
        "module__n_accum_bits": 8,
        "module__learned_lookups": True,
        **_EPOCHS_60,
    },
    "6 bits, learned lookups": {
        "module__n_accum_bits": 6,
        "module__learned_lookups": True,
        **_EPOCHS_60,
    },
    "8 bits, learned lookups, 200 epochs": {
        "module__n_accum_bits": 8,
        "module__learned_lookups": True,
        "max_epochs": 200,
    },
}
# At 100,000 rows (minutes per fit), the settings the defaults are chosen among.
LARGE_CANDIDATES = ("8 bits", "6 bits", "6 bits, learned lookups")
# Only on data of at most AUTO_MAX_FEATURES features, where the defaults fit it.
FEW_FEATURE_CANDIDATES = ("8 bits, learned lookups, 200 epochs",)
# The summary's row for the estimators' defaults: per dataset, the candidate they fit.
DEFAULTS = "defaults (8 bits; learned lookups and 200 epochs up to 8 features)"
# The candidate whose fit time the others are compared with (the former defaults).
REFERENCE = "8 bits"
EXECUTED = {"breast_cancer": 3, "digits": 3}  # rows executed encrypted, per dataset
PEER_DATASETS = ("breast_cancer", "digits")
MAX_CHECK_ROWS = 1000  # test rows simulated, and training rows compile reads
# Largest gap to the float ceiling (accuracy; R^2) the issue sets for the defaults.
TARGET_GAP = {"classification": 0.02, "regression": 0.03}
LARGE_TARGET_GAP = 0.01
SUITES = {
    "the five": DATASETS,
    "extended": EXTENDED_DATASETS,
    "grown": GROWN_DATASETS,
    "100,000 rows": LARGE_DATASETS,
}


# ---------------------------------------------------------------------- the three steps
def accuracy(name: str, candidate: str, cache: Path) -> dict:
    """Step 1 for one dataset and candidate: fold scores, fit time; fold 0's model cached."""
    import torch

    from concrete_qnn import QNNClassifier, QNNRegressor

    torch.set_num_threads(1)
    task = ALL_DATASETS[name][1]
    estimator = QNNClassifier if task == "classification" else QNNRegressor
    scores, seconds_per_epoch, holds = [], [], []
    for index, fold in enumerate(folds(name)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = estimator(random_state=SEED, **CANDIDATES[candidate])
            start = time.perf_counter()
            model.fit(fold.X_train, fold.y_train)
            seconds = time.perf_counter() - start
        seconds_per_epoch.append(seconds / len(model.history))
        scores.append(float(model.score(fold.X_test, fold.y_test)))
        holds.append(bool(model.certificate_.holds))
        if index == 0:
            (cache / _model_file(name, candidate)).write_bytes(pickle.dumps(model))
    return {
        "scores": scores,
        "fit s/epoch": float(np.median(seconds_per_epoch)),
        "certificates hold": all(holds),
    }


def ceiling(name: str) -> dict:
    """Step 1's float ceiling of one dataset (the QNN's hidden width at the defaults)."""
    n_features = folds(name)[0].X_train.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score, which = float_ceiling(name, hidden=hidden_width(n_features))
    return {"ceiling": score, "ceiling model": which}


def encrypted_cost(name: str, candidate: str, cache: Path) -> dict:
    """Step 2 for one dataset and candidate, on fold 0's cached model."""
    from benchmarks.fhe_cost import fhe_cost

    model = pickle.loads((cache / _model_file(name, candidate)).read_bytes())
    fold = folds(name)[0]
    rows = slice(0, MAX_CHECK_ROWS)
    checked = Fold(fold.X_train[rows], fold.y_train[rows], fold.X_test[rows], fold.y_test[rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fhe_cost(model, checked, EXECUTED.get(name, 0))


def peer(python: str, name: str) -> dict:
    """Step 3: Concrete ML at its own defaults on ``name``, in its own environment."""
    command = [python, str(HERE / "peer_fhe_cost.py"), "--dataset", name]
    output = subprocess.run(
        [*command, "--own-defaults", "--json"], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


# ---------------------------------------------------------------------- bookkeeping
def candidates_of(name: str, candidates) -> list[str]:
    """The candidates measured on ``name``: ``LARGE_CANDIDATES`` only at 100,000 rows, and
    ``FEW_FEATURE_CANDIDATES`` only where the defaults learn the lookups."""
    if name in LARGE_DATASETS:
        return [candidate for candidate in candidates if candidate in LARGE_CANDIDATES]
    if not _learned_by_default(name):
        return [candidate for candidate in candidates if candidate not in FEW_FEATURE_CANDIDATES]
    return list(candidates)


@functools.cache  # loads the dataset: once per name
def _learned_by_default(name: str) -> bool:
    """Whether ``learned_lookups="auto"`` learns them on ``name`` (at most
    ``AUTO_MAX_FEATURES`` features)."""
    from concrete_qnn.nn.lookups import AUTO_MAX_FEATURES

    return folds(name)[0].X_train.shape[1] <= AUTO_MAX_FEATURES


def _model_file(name: str, candidate: str) -> str:
    return f"{name}--{candidate.replace(' ', '_').replace(',', '')}.pkl"


def _key(*parts) -> str:
    return " | ".join(parts)


class Store:
    """``frontier.json``: results by key, written after each one."""

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.data = json.loads(path.read_text()) if resume and path.exists() else {}

    def __contains__(self, key):
        return key in self.data

    def __getitem__(self, key):
        return self.data[key]

    def put(self, key: str, value: dict) -> None:
        self.data[key] = value
        self.path.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        print(f"{key}: {value}", flush=True)


def run(datasets, candidates, store: Store, cache: Path, jobs: int, peer_python) -> None:
    """Steps 1 (in ``jobs`` processes), 2 and 3 (alone), skipping what ``store`` holds."""
    # The 100,000-row fits first, so that the two processes end together.
    datasets = sorted(datasets, key=lambda name: name not in LARGE_DATASETS)
    tasks = {
        _key("accuracy", name, candidate): (accuracy, name, candidate, cache)
        for name in datasets
        for candidate in candidates_of(name, candidates)
    }
    tasks.update({_key("ceiling", name): (ceiling, name) for name in datasets})
    pending = {key: task for key, task in tasks.items() if key not in store}
    with ProcessPoolExecutor(jobs) as pool:
        futures = {key: pool.submit(*task) for key, task in pending.items()}
        for key, future in futures.items():
            store.put(key, future.result())
    for name in datasets:
        for candidate in candidates_of(name, candidates):
            key = _key("cost", name, candidate)
            if key not in store:
                store.put(key, encrypted_cost(name, candidate, cache))
        if peer_python and name in PEER_DATASETS and _key("peer", name) not in store:
            store.put(_key("peer", name), peer(peer_python, name))


# ---------------------------------------------------------------------- the report
def rows(store: Store, name: str, candidates) -> list[dict]:
    """One row per candidate measured on ``name``, and the peer's where measured."""
    task = ALL_DATASETS[name][1]
    ceiling_score = store[_key("ceiling", name)]["ceiling"]
    reference = store.data.get(_key("accuracy", name, REFERENCE))
    result = []
    for candidate in candidates:
        scored = store.data.get(_key("accuracy", name, candidate))
        cost = store.data.get(_key("cost", name, candidate))
        if scored is None:
            continue
        mean = float(np.mean(scored["scores"]))
        ratio = scored["fit s/epoch"] / reference["fit s/epoch"] if reference else None
        result.append(
            {
                "setting": candidate,
                "score": mean,
                "folds": scored["scores"],
                "gap": ceiling_score - mean,
                "lookups": cost and cost["lookups"],
                "bootstraps": cost and cost["bootstraps"],
                "complexity": cost and float(cost["complexity"]),
                "accumulator bits": cost and cost["accumulator bits"],
                "s/row": cost and cost["s/row"],
                "disagreements": cost and cost["disagreements"],
                "fit time / 8 bits": ratio,
                "certificates hold": scored["certificates hold"],
            }
        )
    peer_row = store.data.get(_key("peer", name))
    if peer_row:
        result.append(
            {
                "setting": "Concrete ML 1.9, its defaults",
                "score": peer_row["5-fold accuracy"],
                "folds": peer_row["folds"],
                "gap": ceiling_score - peer_row["5-fold accuracy"],
                "lookups": None,
                "bootstraps": peer_row["bootstraps"],
                "complexity": float(peer_row["complexity"]),
                "accumulator bits": peer_row["accumulator bits"],
                "s/row": peer_row["s/row"],
                "disagreements": peer_row["disagreements"],
                "fit time / 8 bits": None,
                "certificates hold": None,
            }
        )
    for row in result:
        row["task"] = task
    return result


def _cell(value, digits=4) -> str:
    if value is None or value == "-":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.2e}"
    return str(value)


def target_gap(name: str) -> float:
    return LARGE_TARGET_GAP if name in LARGE_DATASETS else TARGET_GAP[ALL_DATASETS[name][1]]


def defaults_candidate(name: str) -> str:
    """The candidate the estimators' defaults fit on ``name``: 8 bits, with learned lookups
    and 200 epochs where ``learned_lookups="auto"`` learns them and ``max_epochs="auto"``
    follows."""
    return "8 bits, learned lookups, 200 epochs" if _learned_by_default(name) else "8 bits"


def summary(store: Store, datasets, candidates) -> list[str]:
    """Per candidate: datasets within their target gap, mean and largest gap, and s/row
    against the peer's on each timed dataset."""
    from concrete_qnn.nn.lookups import AUTO_MAX_FEATURES

    measured = [name for name in datasets if _key("ceiling", name) in store]
    timed = [name for name in PEER_DATASETS if name in measured]
    headers = ["setting", "within target", "mean gap", "largest gap (dataset)"]
    headers += [f"{name} s/row (x peer's)" for name in timed]
    skipped = [candidate for candidate in candidates if candidate not in LARGE_CANDIDATES]
    lines = ["## Summary", ""]
    if skipped and any(name in LARGE_DATASETS for name in measured):
        lines += [
            f"Not run at 100,000 rows: {'; '.join(f'`{name}`' for name in skipped)}.",
            f"Run only on data of at most {AUTO_MAX_FEATURES} features, where the defaults fit it: "
            + "; ".join(f"`{name}`" for name in FEW_FEATURE_CANDIDATES if name in candidates)
            + ". The defaults' row takes, per dataset, the setting the estimators' defaults",
            "fit there.",
            "",
        ]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("| " + " | ".join("---" for _ in headers) + " |")
    for candidate in [*candidates, DEFAULTS]:
        found = {
            name: row
            for name in measured
            for row in rows(store, name, candidates)
            if row["setting"] == (defaults_candidate(name) if candidate == DEFAULTS else candidate)
        }
        if not found:
            continue
        gaps = {name: row["gap"] for name, row in found.items()}
        within = sum(gap <= target_gap(name) + 1e-9 for name, gap in gaps.items())
        worst = max(gaps, key=gaps.get)
        cells = [
            candidate,
            f"{within} of {len(gaps)}",
            f"{np.mean(list(gaps.values())):+.4f}",
            f"{gaps[worst]:+.4f} ({worst})",
        ]
        for name in timed:
            ours = found.get(name, {}).get("s/row")
            peer_row = store.data.get(_key("peer", name))
            if not isinstance(ours, float | int):
                cells.append("-")
            elif peer_row:
                cells.append(f"{ours:.2f} ({ours / peer_row['s/row']:.2f}x)")
            else:
                cells.append(f"{ours:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def write(store: Store, datasets, candidates, command: str, note: str) -> None:
    """FRONTIER.md and frontier.png from ``store``."""
    import torch

    lines = [
        "# The accuracy-latency frontier",
        "",
        f"Generated by `{command}` (do not edit by hand); see `benchmarks/frontier.py` for the",
        "protocol. Score: mean over folds (5; 3 at 100,000 rows) of accuracy, or R^2 on the",
        "standardized target; gap: the float ceiling minus the score; target: the gap at most",
        "0.02 (R^2 0.03; 0.01 at 100,000 rows). Cost on fold 0's model; s/row: median of 3",
        "encrypted rows, ours and the peer's in the same run, nothing else running.",
        "Disagreements: `simulate` and `execute` against `disable`, test and corner rows.",
        f"Machine: {os.cpu_count()} CPU(s), {torch.get_num_threads()} torch thread(s) for",
        f"the encrypted steps. {note}",
        "",
        "![score against seconds per encrypted row](frontier.png)",
        "",
    ]
    lines += summary(store, datasets, candidates)
    headers = [
        "setting",
        "score",
        "folds",
        "ceiling",
        "gap",
        "target met",
        "accumulator bits",
        "lookups",
        "bootstraps",
        "complexity",
        "s/row",
        "disagreements",
        "fit time / 8 bits",
    ]
    for suite, members in SUITES.items():
        chosen = [name for name in members if name in datasets]
        if not chosen:
            continue
        lines += [f"## {suite}", ""]
        for name in chosen:
            if _key("ceiling", name) not in store:
                continue
            ceiling_entry = store[_key("ceiling", name)]
            lines += [
                f"### {name}",
                "",
                f"Float ceiling {ceiling_entry['ceiling']:.4f} ({ceiling_entry['ceiling model']}).",
                "",
                "| " + " | ".join(headers) + " |",
                "| " + " | ".join("---" for _ in headers) + " |",
            ]
            for row in rows(store, name, candidates):
                met = row["gap"] <= target_gap(name) + 1e-9  # the gap as printed
                cells = [
                    row["setting"],
                    _cell(row["score"]),
                    " ".join(f"{score:.3f}" for score in row["folds"]),
                    _cell(ceiling_entry["ceiling"]),
                    f"{row['gap']:+.4f}",
                    "yes" if met else "no",
                    _cell(row["accumulator bits"]),
                    _cell(row["lookups"]),
                    _cell(row["bootstraps"]),
                    _cell(row["complexity"]),
                    _cell(row["s/row"], 2),
                    _cell(row["disagreements"]),
                    _cell(row["fit time / 8 bits"], 2),
                ]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    REPORT.write_text("\n".join(lines))
    plot(store, datasets, candidates)


def plot(store: Store, datasets, candidates) -> None:
    """Score against s/row (breast_cancer, digits) and gap against complexity (all)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [name for name in PEER_DATASETS if name in datasets]
    figure, axes = plt.subplots(1, len(timed) + 1, figsize=(5 * (len(timed) + 1), 4))
    axes = np.atleast_1d(axes)
    markers = dict(zip(candidates, "osD^v<>p", strict=False))
    for axis, name in zip(axes, timed, strict=False):
        for row in rows(store, name, candidates):
            if not isinstance(row["s/row"], float | int):
                continue
            peer_row = row["setting"].startswith("Concrete ML")
            axis.scatter(
                row["s/row"],
                row["score"],
                marker="x" if peer_row else markers[row["setting"]],
                color="black" if peer_row else None,
                label=row["setting"],
            )
        axis.set(title=name, xlabel="seconds per encrypted row", ylabel="5-fold accuracy")
        axis.set_xscale("log")
        axis.legend(fontsize=7)
    axis = axes[-1]
    for candidate in candidates:
        points = [
            (row["complexity"], row["gap"])
            for name in datasets
            if _key("ceiling", name) in store
            for row in rows(store, name, [candidate])
            if row["setting"] == candidate and row["complexity"]
        ]
        if points:
            x, y = zip(*points, strict=True)
            axis.scatter(x, y, marker=markers[candidate], label=candidate)
    axis.axhline(0.02, color="grey", linestyle=":", linewidth=1)
    axis.set(
        title="every dataset",
        xlabel="circuit complexity (concrete's cost model)",
        ylabel="gap to the float ceiling",
    )
    axis.set_xscale("log")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(ALL_DATASETS))
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--peer-python", help="python of a venv with concrete-ml==1.9.0")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/frontier-models"))
    parser.add_argument("--resume", action="store_true", help="keep frontier.json's results")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the report from frontier.json"
    )
    parser.add_argument("--note", default="", help="a sentence about the machine's load")
    args = parser.parse_args(argv)
    unknown = [name for name in args.datasets if name not in ALL_DATASETS]
    unknown += [name for name in args.candidates if name not in CANDIDATES]
    if unknown:
        parser.error(f"unknown datasets or candidates: {unknown}")
    args.cache.mkdir(parents=True, exist_ok=True)
    store = Store(RESULTS, resume=args.resume or args.report_only)
    if not args.report_only:
        start = time.perf_counter()
        run(args.datasets, args.candidates, store, args.cache, args.jobs, args.peer_python)
        words = sys.argv[1:] if argv is None else argv
        minutes = (time.perf_counter() - start) / 60
        run_entry = {
            "command": "python -m benchmarks.frontier " + shlex.join(words),
            "note": f"{args.note} Total time {minutes:.1f} min.".strip(),
        }
        if args.resume and "run" in store:  # the report says how each part was measured
            earlier = store["run"]
            run_entry = {
                "command": f"{earlier['command']}`, then `{run_entry['command']}",
                "note": f"{earlier['note']} Then: {run_entry['note']}",
            }
        store.put("run", run_entry)
    if "run" not in store:
        parser.error("frontier.json holds no run to report: run without --report-only")
    write(store, args.datasets, args.candidates, store["run"]["command"], store["run"]["note"])
    print(f"wrote {REPORT} and {PLOT}")


if __name__ == "__main__":
    main()
