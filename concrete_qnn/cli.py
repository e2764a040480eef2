"""Command-line entry point: ``concrete-qnn train`` on a built-in dataset."""

from __future__ import annotations

import argparse
import sys
import time

from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from concrete_qnn.estimators import QNNClassifier, QNNRegressor

# name -> (loader, task)
DATASETS = {
    "breast_cancer": (datasets.load_breast_cancer, "classification"),
    "digits": (datasets.load_digits, "classification"),
    "wine": (datasets.load_wine, "classification"),
    "iris": (datasets.load_iris, "classification"),
    "diabetes": (datasets.load_diabetes, "regression"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="concrete-qnn",
        description="Train quantized neural networks whose accumulators provably fit a bit-width.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train", help="train on a built-in dataset, print the held-out score and certificate"
    )
    train.add_argument("--dataset", choices=sorted(DATASETS), default="breast_cancer")
    train.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    train.add_argument("--n-w-bits", type=int, default=3, help="weight bits (default 3)")
    train.add_argument("--n-a-bits", type=int, default=3, help="activation bits (default 3)")
    train.add_argument(
        "--n-accum-bits", type=int, default=8, help="accumulator bound in bits (default 8)"
    )
    train.add_argument("--random-state", type=int, default=0)
    train.add_argument("--progress", action="store_true", help="show a progress bar while training")
    return parser


def train(args: argparse.Namespace) -> None:
    loader, task = DATASETS[args.dataset]
    X, y = loader(return_X_y=True)
    split = {"stratify": y} if task == "classification" else {}
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=args.random_state, **split
    )
    estimator_class = QNNClassifier if task == "classification" else QNNRegressor
    callbacks = None
    if args.progress:
        from skorch.callbacks import ProgressBar

        callbacks = [ProgressBar()]
    estimator = estimator_class(
        module__n_w_bits=args.n_w_bits,
        module__n_a_bits=args.n_a_bits,
        module__n_accum_bits=args.n_accum_bits,
        max_epochs=args.epochs,
        random_state=args.random_state,
        callbacks=callbacks,
    )
    if task == "regression":  # score R^2 on a standardized target
        scaler = StandardScaler().fit(y_train.reshape(-1, 1))
        y_train = scaler.transform(y_train.reshape(-1, 1)).ravel()
        y_test = scaler.transform(y_test.reshape(-1, 1)).ravel()
    model = make_pipeline(StandardScaler(), estimator)
    start = time.perf_counter()
    model.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    metric = "accuracy" if task == "classification" else "R^2"
    print(
        f"{args.dataset}: {len(X_train)} training rows, {len(X_test)} held-out rows, "
        f"{args.n_w_bits}-bit weights, {args.n_a_bits}-bit activations, "
        f"{args.epochs} epochs in {seconds:.1f} s"
    )
    print(f"held-out {metric}: {model.score(X_test, y_test):.4f}")
    print("accumulator certificate (worst case over every input code):")
    print(model[-1].certificate_.to_text())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            train(args)
    except ValueError as error:
        print(f"concrete-qnn: error: {error}", file=sys.stderr)
        return 2
    return 0
