"""The command-line main job: train, predict, report."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris

from concrete_qnn import load
from concrete_qnn.cli import main


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    frame = load_iris(as_frame=True).frame
    frame["target"] = np.array(["setosa", "versicolor", "virginica"])[frame["target"]]
    frame.to_csv(folder / "iris.csv", index=False)
    return folder / "iris.csv"


@pytest.fixture(scope="module")
def iris_model(iris_csv, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "iris.npz"
    arguments = ["train", str(iris_csv), "--target", "target", "--epochs", "40"]
    assert main([*arguments, "--output", str(path), "--no-progress"]) == 0
    return path


def test_train_prints_the_score_and_a_certificate_that_holds(capsys):
    assert main(["train", "--dataset", "iris", "--epochs", "15", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "iris: 112 training rows, 38 held-out rows" in out
    score = float(out.split("held-out accuracy: ")[1].split()[0])
    assert 0.6 < score <= 1.0
    assert "bound 8 bits: holds" in out
    assert out.count("\n  fc") == 3


def test_train_shows_a_progress_bar_by_default(capsys):
    assert main(["train", "--dataset", "iris", "--epochs", "2"]) == 0
    captured = capsys.readouterr()
    assert "it/s" in captured.err + captured.out or "s/it" in captured.err + captured.out


def test_csv_train_predict_and_report_round_trip(iris_csv, iris_model, tmp_path, capsys):
    capsys.readouterr()
    frame = pd.read_csv(iris_csv)
    model = load(iris_model)
    np.testing.assert_array_equal(model.feature_names, frame.columns[:-1])
    out_csv = tmp_path / "predictions.csv"
    assert main(["predict", str(iris_model), str(iris_csv), "--output", str(out_csv)]) == 0
    predictions = pd.read_csv(out_csv)["prediction"]
    assert len(predictions) == 150
    assert set(predictions) <= {"setosa", "versicolor", "virginica"}
    assert np.mean(predictions == frame["target"]) > 0.7  # raw features: the file standardizes
    assert main(["report", str(iris_model)]) == 0
    out = capsys.readouterr().out
    assert "classification, 4 features, 3-bit weights" in out
    assert "bound 8 bits: holds" in out


def test_regression_predicts_in_the_target_units(tmp_path, capsys):
    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame.to_csv(tmp_path / "diabetes.csv", index=False)
    path = tmp_path / "diabetes.npz"
    arguments = ["train", str(tmp_path / "diabetes.csv"), "--target", "target"]
    assert main([*arguments, "--epochs", "20", "--output", str(path), "--no-progress"]) == 0
    assert "held-out R^2: " in capsys.readouterr().out
    assert main(["predict", str(path), str(tmp_path / "diabetes.csv")]) == 0
    predictions = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))["prediction"]
    assert 50 < predictions.mean() < 250  # diabetes targets span 25 to 346


def run_cli(*arguments):
    return subprocess.run(
        [sys.executable, "-m", "concrete_qnn", *arguments], capture_output=True, text=True
    )


def test_a_user_error_is_one_line_and_exit_status_2():
    result = run_cli("train", "--dataset", "iris", "--n-accum-bits", "3", "--no-progress")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "concrete-qnn: error: n_accum_bits=3 is too small for n_w_bits=3 and n_a_bits=3: "
        "not even one weight-input product fits; raise n_accum_bits or lower the bit-widths"
    ]


def write(path, frame):
    frame.to_csv(path, index=False)
    return str(path)


def test_each_input_error_is_one_line_with_status_2(iris_csv, iris_model, tmp_path, capsys):
    frame = pd.read_csv(iris_csv)
    text_feature = frame.assign(**{"sepal length (cm)": "long"})
    three_columns = frame.iloc[:, :3].rename(columns=lambda c: c.upper())
    cases = [
        (["train", str(tmp_path / "missing.csv"), "--target", "t"], "no such file"),
        (["train", str(iris_csv), "--target", "species"], "no target column 'species'"),
        (["train", str(iris_csv)], "a CSV file needs --target COLUMN"),
        (
            ["train", write(tmp_path / "text.csv", text_feature), "--target", "target"],
            "feature column 'sepal length (cm)' is not numeric",
        ),
        (["predict", str(tmp_path / "nothing.npz"), str(iris_csv)], "no such file"),
        (
            ["predict", str(iris_model), write(tmp_path / "three.csv", three_columns)],
            "has 3 columns and lacks the model's feature column(s)",
        ),
        (["report", str(iris_csv)], "is not a valid concrete-qnn model file"),
    ]
    for arguments, message in cases:
        assert main([*arguments, *(["--no-progress"] if arguments[0] == "train" else [])]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (arguments, err)
        assert err.startswith("concrete-qnn: error: ")
