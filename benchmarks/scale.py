"""Fit time, peak memory and held-out score against the number of rows.

``make_classification(n_samples, n_features=20, n_informative=10, n_classes=3)`` and its
regression twin ``make_regression(n_samples, n_features=20, n_informative=10, noise=10)``,
N training rows plus N/4 held-out rows, features standardized with the training rows' mean
and standard deviation (the regression target likewise); ``random_state=0`` everywhere.
Each fit runs in its own process, so that ``resource.getrusage``'s peak resident memory is
that fit's (data, imports and all). Three models at each N:

- the QNN at its defaults (``QNNClassifier`` / ``QNNRegressor``);
- scikit-learn's ``MLPClassifier`` / ``MLPRegressor`` with the same hidden sizes, its defaults;
- a float skorch MLP of the same topology, trained exactly as the QNN is (AdamW, learning
  rate, weight decay, epochs, cosine schedule, the QNN's ``batch_size_``, batched loading).

Score: accuracy, or R^2 on the standardized target. Results accumulate in
``benchmarks/scale_results.json`` (one entry per task, N, model and device; a rerun replaces its
entries), from which ``benchmarks/SCALE.md`` and ``benchmarks/scale_fit_time.png`` are
regenerated (``--report`` regenerates them alone). Run, e.g.:

    python -m benchmarks.scale --sizes 1e3 1e4 1e5 --threads 1
    python -m benchmarks.scale --sizes 1e6 --tasks classification --models qnn

``--device cuda`` fits the two torch models on a GPU (scikit-learn's MLP has no GPU path);
those rows record their machine (GPU, CPU count, torch) and peak GPU memory
(``torch.cuda.max_memory_allocated``), and the table puts them beside the CPU rows of the
same task, N and model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "scale_results.json"
TABLE = HERE / "SCALE.md"
PLOT = HERE / "scale_fit_time.png"
TASKS = ("classification", "regression")
MODELS = ("qnn", "sklearn_mlp", "skorch_float")
MODEL_NAMES = {
    "qnn": "QNN (defaults)",
    "sklearn_mlp": "scikit-learn MLP",
    "skorch_float": "float skorch MLP",
}
N_FEATURES = 20


def make_data(task: str, n_rows: int):
    """Standardized (X_train, y_train, X_test, y_test): ``n_rows`` training rows, N/4 held out."""
    from sklearn import datasets

    n_test = max(n_rows // 4, 1)
    common = {"n_samples": n_rows + n_test, "n_features": N_FEATURES, "n_informative": 10}
    if task == "classification":
        X, y = datasets.make_classification(**common, n_classes=3, random_state=0)
    else:
        X, y = datasets.make_regression(**common, noise=10.0, random_state=0)
    X_train, X_test = X[:n_rows], X[n_rows:]
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    X_train = ((X_train - mean) / std).astype(np.float32)
    X_test = ((X_test - mean) / std).astype(np.float32)
    y_train, y_test = y[:n_rows], y[n_rows:]
    if task == "regression":
        y_mean, y_std = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - y_mean) / y_std, (y_test - y_mean) / y_std
    return X_train, y_train, X_test, y_test


def float_skorch_net(task: str, qnn, n_rows: int, device: str):
    """A float skorch MLP trained as ``qnn`` (unfitted) would be on ``n_rows`` rows: same
    topology, optimizer, learning rate, weight decay, epochs, cosine schedule, batch size
    and batched loading."""
    import torch
    from skorch import NeuralNetClassifier, NeuralNetRegressor

    from benchmarks.protocol import FloatMLP, hidden_width
    from concrete_qnn.training import batching
    from concrete_qnn.training.callbacks import CosineLearningRate

    classify = task == "classification"
    base = NeuralNetClassifier if classify else NeuralNetRegressor

    class FloatNet(base):
        get_iterator = batching.get_iterator  # the QNN's batched loading

    return FloatNet(
        FloatMLP,
        module__input_dim=N_FEATURES,
        module__n_outputs=3 if classify else 1,
        module__hidden=hidden_width(N_FEATURES),
        module__n_layers=qnn.module__n_layers,
        criterion=torch.nn.CrossEntropyLoss if classify else torch.nn.MSELoss,
        optimizer=torch.optim.AdamW,
        lr=qnn.lr,
        optimizer__weight_decay=qnn.optimizer__weight_decay,
        max_epochs=qnn.max_epochs,
        batch_size=batching.auto_batch_size(n_rows),
        iterator_train__shuffle=True,
        train_split=None,
        callbacks=[("lr_schedule", CosineLearningRate())],
        verbose=0,
        device=device,
    )


def fit_one(task: str, n_rows: int, model: str, device: str = "cpu") -> dict:
    """Fit one model in this process, on ``device`` (torch models only); its fit seconds,
    peak memory and held-out score, and on a GPU the machine that ran it."""
    import torch
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    from benchmarks.protocol import hidden_width
    from concrete_qnn import QNNClassifier, QNNRegressor

    X_train, y_train, X_test, y_test = make_data(task, n_rows)
    classify = task == "classification"
    qnn = (QNNClassifier if classify else QNNRegressor)(random_state=0, device=device)
    hidden = hidden_width(N_FEATURES)
    if model == "qnn":
        estimator = qnn
    elif model == "sklearn_mlp":
        sizes = (hidden,) * (qnn.module__n_layers - 1)
        estimator = (MLPClassifier if classify else MLPRegressor)(
            hidden_layer_sizes=sizes, random_state=0
        )
    else:
        estimator = float_skorch_net(task, qnn, n_rows, device)
        torch.manual_seed(0)
        if classify:
            y_train = y_train.astype(np.int64)
        else:
            y_train = y_train.astype(np.float32).reshape(-1, 1)
    start = time.perf_counter()
    estimator.fit(X_train, y_train)
    if device != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if model == "skorch_float" and not classify:
        from sklearn.metrics import r2_score

        score = r2_score(y_test, estimator.predict(X_test).ravel())
    else:
        score = estimator.score(X_test, y_test)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    result = {"task": task, "n_rows": n_rows, "model": model, "device": device}
    result["fit_s"] = seconds
    result.update({"peak_memory_bytes": peak, "score": float(score)})
    if model == "sklearn_mlp":
        result.update({"batch_size": estimator.batch_size, "epochs": int(estimator.n_iter_)})
    else:
        result.update(
            {"batch_size": estimator.batch_size_ if model == "qnn" else estimator.batch_size}
        )
        result["epochs"] = len(estimator.history)
    if device != "cpu":
        result["machine"] = {
            "gpu": torch.cuda.get_device_name(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
        result["gpu_peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    return result


def run_in_subprocess(task: str, n_rows: int, model: str, threads: int | None, device: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.scale", "--one", task, str(n_rows), model]
    command += ["--device", device]
    if threads is not None:
        command += ["--threads", str(threads)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def log_log_slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(fit seconds) against log(N); None under two points."""
    if len(points) < 2:
        return None
    x = np.log([n for n, _ in points])
    y = np.log([s for _, s in points])
    return float(np.polyfit(x, y, 1)[0])


def device_of(result: dict) -> str:
    return result.get("device", "cpu")  # rows measured before --device existed ran on the CPU


def write_report(results: list[dict], machine: dict) -> None:
    gpu_rows = [r for r in results if device_of(r) != "cpu"]
    results = [r for r in results if device_of(r) == "cpu"]

    def by(task, model):
        rows = [r for r in results if r["task"] == task and r["model"] == model]
        return sorted(rows, key=lambda r: r["n_rows"])

    lines = [
        "# Scaling with the number of rows",
        "",
        "Generated by `python -m benchmarks.scale` (do not edit by hand); see its docstring for",
        "the protocol. Each fit ran in its own process; peak memory is that process's",
        "`ru_maxrss` (data and imports included). Score: held-out accuracy, or R^2 on the",
        'standardized target. QNN and float skorch MLP: 60 epochs, `batch_size="auto"`.',
        f"Machine: {machine['cpus']} CPU(s), {machine['threads']}; {machine['note']}",
        "",
        f"![fit time against N]({PLOT.name})",
        "",
    ]
    for task in TASKS:
        sizes = sorted({r["n_rows"] for r in results if r["task"] == task})
        if not sizes:
            continue
        lines += [f"## {task}", ""]
        lines += [
            "| N | model | batch size | epochs | fit s | fit time / QNN's | peak memory MB "
            "| held-out score |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for n_rows in sizes:
            qnn = [r["fit_s"] for r in by(task, "qnn") if r["n_rows"] == n_rows]
            for model in MODELS:
                for r in by(task, model):
                    if r["n_rows"] == n_rows:
                        batch = r["batch_size"]
                        if batch == "auto":  # scikit-learn's MLP: min(200, n_samples)
                            batch = min(200, n_rows)
                        ratio = f"{r['fit_s'] / qnn[0]:.2f}" if qnn else "n/a"
                        lines.append(
                            f"| {n_rows:,} | {MODEL_NAMES[model]} | {batch} | {r['epochs']} "
                            f"| {r['fit_s']:.1f} | {ratio} | "
                            f"{r['peak_memory_bytes'] / 1e6:,.0f} | {r['score']:.4f} |"
                        )
        lines += ["", "| model | log-log slope of fit time, N >= 10,000 |", "| --- | --- |"]
        for model in MODELS:
            points = [(r["n_rows"], r["fit_s"]) for r in by(task, model) if r["n_rows"] >= 10_000]
            slope = log_log_slope(points)
            text = "n/a (under two sizes)" if slope is None else f"{slope:.2f}"
            lines.append(f"| {MODEL_NAMES[model]} | {text} |")
        lines.append("")
    lines += gpu_report(gpu_rows, results)
    TABLE.write_text("\n".join(lines))


def gpu_report(gpu_rows: list[dict], cpu_rows: list[dict]) -> list[str]:
    """The GPU rows beside the CPU rows of the same task, N and model."""
    if not gpu_rows:
        return []
    lines = [
        "## On a GPU (`--device cuda`)",
        "",
        "| task | N | model | machine | batch size | epochs | fit s | CPU fit s | GPU / CPU "
        "fit time | peak GPU memory MB | held-out score | CPU score |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(gpu_rows, key=lambda r: (r["task"], r["n_rows"], r["model"])):
        key = (r["task"], r["n_rows"], r["model"])
        cpu = [c for c in cpu_rows if (c["task"], c["n_rows"], c["model"]) == key]
        cpu_s = f"{cpu[0]['fit_s']:.1f}" if cpu else "n/a"
        ratio = f"{r['fit_s'] / cpu[0]['fit_s']:.2f}" if cpu else "n/a"
        cpu_score = f"{cpu[0]['score']:.4f}" if cpu else "n/a"
        m = r["machine"]
        lines.append(
            f"| {r['task']} | {r['n_rows']:,} | {MODEL_NAMES[r['model']]} | {m['gpu']}, "
            f"{m['cpus']} CPUs, torch {m['torch']} | {r['batch_size']} | {r['epochs']} "
            f"| {r['fit_s']:.1f} | {cpu_s} | {ratio} | "
            f"{r['gpu_peak_memory_bytes'] / 1e6:,.0f} | {r['score']:.4f} | {cpu_score} |"
        )
    return [*lines, ""]


def plot(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(TASKS), figsize=(10, 4), squeeze=False)
    for axis, task in zip(axes[0], TASKS, strict=True):
        for model in MODELS:
            rows = sorted(
                (
                    r
                    for r in results
                    if r["task"] == task and r["model"] == model and device_of(r) == "cpu"
                ),
                key=lambda r: r["n_rows"],
            )
            if rows:
                axis.loglog(
                    [r["n_rows"] for r in rows],
                    [r["fit_s"] for r in rows],
                    "o-",
                    label=MODEL_NAMES[model],
                )
        axis.set_title(task)
        axis.set_xlabel("training rows N")
        axis.set_ylabel("fit seconds")
        axis.grid(True, which="both", alpha=0.3)
        if axis.get_lines():
            axis.legend()
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1e3", "1e4", "1e5", "1e6"])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and BLAS threads (default: theirs)"
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device of the QNN and float skorch fits, e.g. cuda (default: cpu)",
    )
    parser.add_argument("--note", default="", help="a line on the machine's load, for the table")
    parser.add_argument(
        "--report", action="store_true", help="only rewrite the table and plot from the results"
    )
    parser.add_argument("--one", nargs=3, metavar=("TASK", "N", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads is not None:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    if args.one:
        task, n_rows, model = args.one
        print(json.dumps(fit_one(task, int(n_rows), model, args.device)))
        return
    if args.device != "cpu" and "sklearn_mlp" in args.models:
        parser.error("scikit-learn's MLP runs on the CPU only: pass --models qnn skorch_float")
    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"results": []}
    results = stored["results"]
    if args.report:
        write_report(results, stored["machine"])
        plot(results)
        return
    for n_rows in (int(float(size)) for size in args.sizes):
        for task in args.tasks:
            for model in args.models:
                result = run_in_subprocess(task, n_rows, model, args.threads, args.device)
                print(json.dumps(result), flush=True)
                key = (task, n_rows, model, args.device)
                results = [
                    r for r in results if (r["task"], r["n_rows"], r["model"], device_of(r)) != key
                ]
                results.append(result)
                if args.device == "cpu":  # GPU rows carry their own machine
                    threads = (
                        f"{args.threads} torch/BLAS thread(s)"
                        if args.threads
                        else "default torch/BLAS threads"
                    )
                    machine = {"cpus": os.cpu_count(), "threads": threads, "note": args.note}
                    machine["python"] = platform.python_version()
                    stored["machine"] = machine
                stored["results"] = results
                RESULTS.write_text(json.dumps(stored, indent=1))
                write_report(results, stored["machine"])
                plot(results)


if __name__ == "__main__":
    main()
