"""Command-line entry point: ``concrete-qnn train | predict | report``.

``train`` fits on a built-in dataset or a CSV file, prints the held-out score and the
certificate and saves the model (features and target standardization included) in the safe
``.npz`` format; ``predict`` writes a saved model's predictions for a CSV file, reading its
feature columns by the names stored in the model; ``report`` prints a saved model's
certificate. A user error (a bad file, a missing column, an empty or non-numeric cell) prints
one line and exits with status 2 before anything is written. Reading CSV files, and what
``train`` infers from them (the separator, the task), is ``cli_data``'s.
"""

from __future__ import annotations

import argparse
import os
import reprlib
import sys
import time
from pathlib import Path

import numpy as np

from concrete_qnn.cli_data import (
    DATASETS,
    HELD_OUT,
    MAX_INTEGER_CLASSES,
    UsageError,
    load_training_data,
    numeric_features,
    one_column_hint,
    read_csv,
    separator_argument,
)


def positive_integer(text: str) -> int:
    """argparse's type for a count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


# --learned-lookups: the choices and the module__learned_lookups each stands for.
LEARNED_LOOKUPS = {"auto": "auto", "yes": True, "no": False}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="concrete-qnn",
        description="Train quantized neural networks whose accumulators provably fit a bit-width.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train", help="train, print the held-out score and the certificate, save the model"
    )
    train.add_argument("csv", nargs="?", type=Path, help="CSV file (default: --dataset)")
    train.add_argument(
        "--dataset",
        choices=sorted(DATASETS),
        help="a scikit-learn dataset, when no CSV file is given (default breast_cancer)",
    )
    train.add_argument("--target", help="target column of the CSV file")
    add_sep_argument(train)
    train.add_argument(
        "--task",
        choices=["classification", "regression"],
        help="for a CSV file (default: classification for a text or boolean target or whole "
        f"numbers with at most {MAX_INTEGER_CLASSES} distinct values, else regression; train "
        "prints which and why)",
    )
    train.add_argument("--output", type=Path, help="save the model here (.npz)")
    train.add_argument(
        "--epochs",
        type=positive_integer,
        help="training epochs (default: as the estimators, 200 with learned lookups, else 60)",
    )
    train.add_argument("--n-w-bits", type=int, default=3, help="weight bits (default 3)")
    train.add_argument("--n-a-bits", type=int, default=3, help="activation bits (default 3)")
    train.add_argument(
        "--n-accum-bits", type=int, default=8, help="accumulator bound in bits (default 8)"
    )
    train.add_argument(
        "--learned-lookups",
        choices=sorted(LEARNED_LOOKUPS),
        default="auto",
        help="whether each hidden neuron learns the function its table holds: yes, no, or "
        "auto (the default: as the estimators, yes on data of few features)",
    )
    train.add_argument("--random-state", type=int, default=0)
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    predict = commands.add_parser("predict", help="write a saved model's predictions as CSV")
    predict.add_argument("model", type=Path)
    predict.add_argument("csv", type=Path)
    add_sep_argument(predict)
    predict.add_argument("--output", type=Path, help="CSV file to write (default: stdout)")
    report = commands.add_parser("report", help="print a saved model's certificate")
    report.add_argument("model", type=Path)
    add_serve_parser(commands)
    return parser


def add_sep_argument(command) -> None:
    command.add_argument(
        "--sep",
        type=separator_argument,
        help="the CSV file's separator: one character, tab or \\t (default: detected from "
        "the header, among comma, semicolon, tab and pipe)",
    )


def add_serve_parser(commands) -> None:
    from concrete_qnn.deploy.http_server import DEFAULT_MAX_CIPHERTEXT_MB, DEFAULT_MAX_KEY_MB

    serve = commands.add_parser(
        "serve", help="serve encrypted predictions over HTTP (a directory written by save_fhe)"
    )
    serve.add_argument("directory", type=Path, help="what model.save_fhe(DIRECTORY) wrote")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--keys-dir",
        type=Path,
        help="where uploaded evaluation keys are kept (default DIRECTORY/evaluation_keys)",
    )
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--max-key-mb",
        type=float,
        default=DEFAULT_MAX_KEY_MB,
        help=f"largest evaluation keys upload in MiB (default {DEFAULT_MAX_KEY_MB})",
    )
    serve.add_argument(
        "--max-ciphertext-mb",
        type=float,
        default=DEFAULT_MAX_CIPHERTEXT_MB,
        help=f"largest ciphertext in MiB (default {DEFAULT_MAX_CIPHERTEXT_MB})",
    )


# ---------------------------------------------------------------------- commands
def train(args) -> None:
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from concrete_qnn.estimators import QNNClassifier, QNNRegressor

    if args.output is not None and not args.output.parent.is_dir():
        raise UsageError(f"no such directory for --output: {args.output.parent}")
    data = load_training_data(args)
    X, y, task = data.X, data.y, data.task
    print("\n".join(data.inferred))
    split = {"stratify": y} if task == "classification" else {}
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=HELD_OUT, random_state=args.random_state, **split
    )
    scaler = StandardScaler().fit(X_train)  # the regressor standardizes the target itself
    estimator_class = QNNClassifier if task == "classification" else QNNRegressor
    estimator = estimator_class(
        module__n_w_bits=args.n_w_bits,
        module__n_a_bits=args.n_a_bits,
        module__n_accum_bits=args.n_accum_bits,
        module__learned_lookups=LEARNED_LOOKUPS[args.learned_lookups],
        max_epochs="auto" if args.epochs is None else args.epochs,
        random_state=args.random_state,
        progress_bar=not args.no_progress,
    )
    start = time.perf_counter()
    estimator.fit(scaler.transform(X_train), y_train)
    seconds = time.perf_counter() - start
    model = estimator.integer_model_.with_standardization(
        scaler.mean_, scaler.scale_, feature_names=[str(c) for c in X.columns]
    )
    predictions = model.predict(X_test.to_numpy(dtype=np.float64))
    if task == "classification":
        metric, score = "accuracy", float(np.mean(predictions == y_test))
    else:
        from sklearn.metrics import r2_score

        metric, score = "R^2", r2_score(y_test, predictions)
    print(
        f"{data.name}: {len(X_train)} training rows, {len(X_test)} held-out rows, "
        f"{args.n_w_bits}-bit weights, {estimator.module_.input_bit_width}-bit inputs, "
        f"{args.n_a_bits}-bit activations, "
        f"{'learned' if estimator.module_.config.learned_lookups_used else 'fixed'} lookups, "
        f"{estimator.module_.weight_scaling_used} weight scaling, "
        f"{estimator.max_epochs_} epochs in {seconds:.1f} s"
    )
    print(f"held-out {metric}: {score:.4f}")
    print("accumulator certificate (worst case over every reachable input code):")
    print(model.certificate.to_text())
    if args.output is not None:
        model.save(args.output)
        print(f"model saved to {args.output}")


def load_model(path: Path):
    from concrete_qnn.integer import load

    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    return load(path)


def predict(args) -> None:
    if args.output is not None and any(
        args.output.resolve() == path.resolve() for path in (args.csv, args.model)
    ):
        raise UsageError(f"--output {args.output} would overwrite an input file")
    model = load_model(args.model)
    frame, separator, _ = read_csv(args.csv, args.sep)
    if model.feature_names is not None:  # by name: other columns (the target) may stay
        missing = [name for name in model.feature_names if name not in frame.columns]
        if missing:
            raise UsageError(
                f"{args.csv} lacks the model's feature column(s) {reprlib.repr(missing)}"
                f"{one_column_hint(frame, separator)}"
            )
        frame = frame[list(model.feature_names)]
    elif frame.shape[1] != model.n_features_in:
        raise UsageError(
            f"{args.csv} has {frame.shape[1]} feature columns, the model expects "
            f"{model.n_features_in}"
        )
    predictions = model.predict(numeric_features(frame, args.csv))
    import pandas as pd

    table = pd.DataFrame(predictions.reshape(len(frame), -1))
    table.columns = (
        ["prediction"]
        if table.shape[1] == 1
        else [f"prediction_{i}" for i in range(table.shape[1])]
    )
    if args.output is None:
        table.to_csv(sys.stdout, index=False)
    else:
        table.to_csv(args.output, index=False)
        print(f"{len(table)} predictions written to {args.output}")


def report(args) -> None:
    model = load_model(args.model)
    config = model.config
    print(
        f"{args.model}: {model.head.task}, {model.n_features_in} features, "
        f"{config['n_w_bits']}-bit weights, {config['n_input_bits']}-bit inputs, "
        f"{config['n_a_bits']}-bit {'signed' if config['quant_signed'] else 'unsigned'} activations"
    )
    print(model.certificate.to_text())


def serve(args) -> None:
    from concrete_qnn.deploy.http_server import serve as serve_http

    if not args.directory.is_dir():
        raise UsageError(f"no such directory: {args.directory}")
    try:
        serve_http(
            args.directory,
            host=args.host,
            port=args.port,
            keys_dir=args.keys_dir,
            workers=args.workers,
            max_key_mb=args.max_key_mb,
            max_ciphertext_mb=args.max_ciphertext_mb,
        )
    except ImportError as error:
        raise UsageError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"train": train, "predict": predict, "report": report, "serve": serve}[args.command]
    try:
        command(args)
    except BrokenPipeError:
        # The reader closed the pipe (`concrete-qnn predict ... | head`): stop quietly, as
        # Unix tools do. Python's recipe (docs: "Note on SIGPIPE"): stdout goes to devnull
        # so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (UsageError, ValueError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"concrete-qnn: error: {message}", file=sys.stderr)
        return 2
    return 0
