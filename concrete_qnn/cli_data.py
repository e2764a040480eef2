"""What ``concrete-qnn train`` and ``predict`` read, and what ``train`` infers from it.

A CSV file's separator (unless ``--sep``): the first of comma, semicolon, tab and pipe that
splits the header into more than one column and each of the first lines into as many; else
the first that splits the header; else a comma (a one-column file). A target's task (unless
``--task``): classification for a text or boolean target and for a whole-number target with
at most ``MAX_INTEGER_CLASSES`` distinct values, regression for any other numeric target.
``train`` prints both choices and why. Every problem with the file is a ``UsageError`` that
names it in one line.
"""

from __future__ import annotations

import argparse
import csv
import math
import reprlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# name -> (loader name in sklearn.datasets, task)
DATASETS = {
    "breast_cancer": ("load_breast_cancer", "classification"),
    "digits": ("load_digits", "classification"),
    "wine": ("load_wine", "classification"),
    "iris": ("load_iris", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}
SEPARATORS = (",", ";", "\t", "|")  # tried in this order
SNIFFED_LINES = 50  # the header and the data lines after it that choose the separator
# A whole-number target with more distinct values is read as a quantity (a count, a price)
MAX_INTEGER_CLASSES = 20
HELD_OUT = 0.25  # train's held-out share of the rows


class UsageError(Exception):
    """A problem with the user's input: reported in one line, exit status 2."""


@dataclass(frozen=True)
class TrainingData:
    """What ``train`` fits: X (DataFrame), y (array), the task, a name for the data, and the
    lines that say what was inferred and why."""

    X: object
    y: np.ndarray
    task: str
    name: str
    inferred: tuple[str, ...]


def separator_argument(text: str) -> str:
    """``--sep``: one character; ``tab`` or ``\\t`` for a tab."""
    separator = "\t" if text in ("tab", "\\t") else text
    if len(separator) != 1 or separator in '\r\n"':
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a separator: give one character (tab or \\t for a tab)"
        )
    return separator


def first_lines(path: Path) -> list[str]:
    """The first ``SNIFFED_LINES`` non-blank lines of a file, as ``pandas.read_csv`` reads it
    (decompressed by its suffix, UTF-8): read as one column split at a control character no
    CSV file holds, unquoted. An undecodable byte is replaced: the read proper reports it."""
    import pandas as pd

    try:
        lines = pd.read_csv(
            path,
            sep="\x1e",  # ASCII's record separator
            header=None,
            nrows=SNIFFED_LINES,
            quoting=csv.QUOTE_NONE,
            dtype=str,
            na_filter=False,
            encoding_errors="replace",
        )
    except (ValueError, UnicodeDecodeError):  # an empty file, or one pandas cannot read at all
        return []
    return lines[0].tolist()


def detect_separator(path: Path) -> tuple[str, str]:
    """The separator of a CSV file and why (see the module docstring)."""
    sample = first_lines(path)
    widths = {
        separator: [len(row) for row in csv.reader(sample, delimiter=separator) if row]
        for separator in SEPARATORS
    }
    splitting = [s for s in SEPARATORS if widths[s] and widths[s][0] > 1]
    for separator in splitting:
        if len(set(widths[separator])) == 1:
            lines, columns = len(widths[separator]), widths[separator][0]
            return separator, f"it splits the first {lines} lines into {columns} columns each"
    if splitting:
        return splitting[0], f"it splits the header into {widths[splitting[0]][0]} columns"
    return ",", "no separator splits the header: one column"


def read_csv(path: Path, separator: str | None = None):
    """The CSV file as a DataFrame with at least one data row, its separator (``separator``
    when given, else the detected one) and the line that says why."""
    import pandas as pd

    if path.is_dir():
        raise UsageError(f"{path} is a directory, not a CSV file")
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    said = f"separator: {separator!r} (--sep)"
    if separator is None:
        separator, reason = detect_separator(path)
        said = f"separator: {separator!r} ({reason}); pass --sep to choose another"
    try:
        frame = pd.read_csv(path, sep=separator)
    except (ValueError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path} as CSV: {error}") from None
    if frame.empty:
        raise UsageError(f"{path} has no data rows")
    return frame, separator, said


def one_column_hint(frame, separator: str) -> str:
    """For a missing-column error: what the header was read as, when it is one column."""
    if frame.shape[1] != 1:
        return ""
    header = reprlib.repr(frame.columns[0])
    return f"; the header was read as one column ({header}) split at {separator!r}: pass --sep"


def check_column(frame, column, path: Path, numeric: bool) -> None:
    """A UsageError naming the first bad cell of ``column``, if it has one.

    A cell is bad when it is empty, or, in a ``numeric`` column, not a number or infinite.
    Rows are counted from 1 after the header.
    """
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    values = frame[column]

    def refuse_first(bad: np.ndarray, problem: str) -> None:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            problem = problem.format(value=values.iloc[row])
            raise UsageError(f"{path}: data row {row + 1}, column {column!r}: {problem}")

    refuse_first(values.isna().to_numpy(), "missing value")
    if not numeric:
        return
    if is_bool_dtype(values) or not is_numeric_dtype(values):
        not_numbers = pd.to_numeric(values, errors="coerce").isna().to_numpy()
        refuse_first(not_numbers | is_bool_dtype(values), "{value!r} is not a number")
    else:
        refuse_first(np.isinf(values.to_numpy(dtype=np.float64)), "infinite value")


def numeric_features(frame, path: Path) -> np.ndarray:
    """The frame as float64 (n_rows, n_columns), or a UsageError naming the first bad cell."""
    for column in frame.columns:
        check_column(frame, column, path, numeric=True)
    return frame.to_numpy(dtype=np.float64)


def infer_task(y: np.ndarray, kind: str) -> tuple[str, str]:
    """The task for a target of ``kind`` ("text", "boolean" or "numeric"), and the line that
    says why, with the ``--task`` that overrides it."""
    if kind != "numeric":
        return "classification", (
            f"task: classification ({kind} target with {len(np.unique(y))} distinct values; "
            "a regressor needs a numeric target)"
        )
    classifier = "pass --task classification to fit a classifier"
    if not np.array_equal(y, np.round(y)):
        return "regression", f"task: regression (numeric target with fractions); {classifier}"
    distinct = len(np.unique(y))
    if distinct > MAX_INTEGER_CLASSES:
        return "regression", (
            f"task: regression (whole-number target with {distinct} distinct values, more than "
            f"{MAX_INTEGER_CLASSES}); {classifier}"
        )
    return "classification", (
        f"task: classification (whole-number target with {distinct} distinct values, at most "
        f"{MAX_INTEGER_CLASSES}); pass --task regression to fit a regressor"
    )


def check_classes_split(y: np.ndarray, path: Path, target: str, kind: str) -> None:
    """A UsageError when train's stratified held-out split cannot take the classes: each
    needs 2 rows, and each side of the split a row of every class."""
    labels, counts = np.unique(y, return_counts=True)
    advice = (
        "pass --task regression to fit a regressor, or add rows"
        if kind == "numeric"
        else "merge or drop the rare classes, or add rows"
    )
    single = labels[counts < 2]
    if single.size:
        raise UsageError(
            f"{path}: {single.size} of the {labels.size} classes of {target!r} have a single "
            f"row ({reprlib.repr(single.tolist())}); the held-out split needs at least 2 rows "
            f"per class: {advice}"
        )
    held_out = math.ceil(HELD_OUT * len(y))
    if min(held_out, len(y) - held_out) < labels.size:
        raise UsageError(
            f"{path}: {labels.size} classes of {target!r} do not fit {len(y) - held_out} "
            f"training and {held_out} held-out rows, each of which needs a row of every "
            f"class: {advice}"
        )


def load_training_data(args) -> TrainingData:
    """What ``train`` fits: a built-in dataset or the ``--target`` column of a CSV file."""
    if args.csv is None:
        from sklearn import datasets

        if args.target is not None:
            raise UsageError("--target names a column of a CSV file; a --dataset has its own")
        for option, value in (("--sep", args.sep), ("--task", args.task)):
            if value is not None:
                raise UsageError(f"{option} is for a CSV file, not a --dataset")
        name = args.dataset or "breast_cancer"
        loader, task = DATASETS[name]
        bunch = getattr(datasets, loader)(as_frame=True)
        said = f"task: {task} (the {name} dataset's)"
        return TrainingData(bunch.data, bunch.target.to_numpy(), task, name, (said,))
    if args.dataset is not None:
        raise UsageError(f"train either {args.csv} or --dataset {args.dataset}, not both")
    frame, separator, read_as = read_csv(args.csv, args.sep)
    if args.target is None:
        raise UsageError("a CSV file needs --target COLUMN")
    if args.target not in frame.columns:
        hint = one_column_hint(frame, separator)
        raise UsageError(f"{args.csv}: no target column {args.target!r}{hint}")
    if frame.shape[1] == 1:
        raise UsageError(f"{args.csv}: no feature column besides the target {args.target!r}")
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    target = frame[args.target]
    kind = "boolean" if is_bool_dtype(target) else "numeric" if is_numeric_dtype(target) else "text"
    check_column(frame, args.target, args.csv, numeric=kind == "numeric")
    y = target.to_numpy()
    frame = frame.drop(columns=args.target)
    numeric_features(frame, args.csv)
    task, said = infer_task(y, kind)
    if args.task is not None:
        task, said = args.task, f"task: {args.task} (--task)"
    if task == "regression" and kind != "numeric":
        raise UsageError(f"{args.csv}: target column {args.target!r} is not numeric")
    if task == "classification":
        check_classes_split(y, args.csv, args.target, kind)
    return TrainingData(frame, y, task, str(args.csv), (read_as, said))
