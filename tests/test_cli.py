"""The command-line main job: train, predict, report."""

import csv
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
    assert "3-bit activations, learned lookups, max weight scaling, 15 epochs" in out


def test_train_names_the_weight_scaling_auto_chose(capsys):
    arguments = ["train", "--dataset", "iris", "--epochs", "2", "--n-accum-bits", "6"]
    assert main([*arguments, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "4-bit inputs, 3-bit activations, learned lookups, budget_mse weight scaling" in out
    assert "bound 6 bits: holds" in out


@pytest.mark.parametrize(
    ("choice", "used"), [("auto", "learned"), ("yes", "learned"), ("no", "fixed")]
)
def test_train_takes_and_names_the_lookups(choice, used, capsys):
    arguments = ["train", "--dataset", "iris", "--epochs", "2", "--learned-lookups", choice]
    assert main([*arguments, "--no-progress"]) == 0
    assert f"3-bit activations, {used} lookups, max weight scaling" in capsys.readouterr().out


def test_train_with_a_wide_dataset_keeps_fixed_lookups_under_auto(capsys):
    arguments = ["train", "--dataset", "breast_cancer", "--epochs", "1", "--no-progress"]
    assert main(arguments) == 0
    assert "fixed lookups" in capsys.readouterr().out  # 30 features


def test_train_epochs_default_to_the_estimators_auto(capsys):
    arguments = ["train", "--dataset", "breast_cancer", "--no-progress"]
    assert main(arguments) == 0  # 30 features: fixed lookups, 60 epochs
    assert "max weight scaling, 60 epochs in" in capsys.readouterr().out


@pytest.mark.parametrize(("value", "message"), [("0", "0 is below 1"), ("x", "'x' is not an")])
def test_train_refuses_epochs_below_one_naming_the_option(value, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["train", "--dataset", "iris", "--epochs", value])
    assert exited.value.code == 2
    assert f"argument --epochs: {message}" in capsys.readouterr().err


def test_train_refuses_an_unknown_lookups_choice(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["train", "--dataset", "iris", "--learned-lookups", "true"])
    assert exited.value.code == 2
    assert "invalid choice: 'true'" in capsys.readouterr().err


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


@pytest.mark.slow
def test_a_reader_that_closes_the_pipe_stops_predict_quietly(iris_csv, iris_model, tmp_path):
    # `concrete-qnn predict ... | head -1`: more output than a pipe buffers, read one line.
    frame = pd.read_csv(iris_csv)
    pd.concat([frame] * 200).to_csv(tmp_path / "many.csv", index=False)
    command = [sys.executable, "-m", "concrete_qnn", "predict", str(iris_model)]
    process = subprocess.Popen(
        [*command, str(tmp_path / "many.csv")], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout.readline().strip() == b"prediction"
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=120) == 1
    assert stderr == ""


@pytest.mark.slow
def test_a_user_error_is_one_line_and_exit_status_2():
    # 2 bits: below 8 bits the weight scale follows the budget, so even the code 1 must fit
    result = run_cli("train", "--dataset", "iris", "--n-accum-bits", "2", "--no-progress")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "concrete-qnn: error: n_accum_bits=2 is too small for n_w_bits=3 and n_a_bits=3 and "
        "n_input_bits=2: a neuron's largest weight at its smallest code (1) times the first "
        "layer's largest input code (2) is 2, over 1, so no weight fits the L1 budget; raise "
        "n_accum_bits or lower the bit-widths"
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
        (["train", str(tmp_path), "--target", "t"], f"{tmp_path} is a directory, not a CSV"),
        (["train", str(iris_csv), "--target", "species"], "no target column 'species'"),
        (["train", str(iris_csv)], "a CSV file needs --target COLUMN"),
        (
            ["train", write(tmp_path / "text.csv", text_feature), "--target", "target"],
            "data row 1, column 'sepal length (cm)': 'long' is not a number",
        ),
        (["predict", str(tmp_path / "nothing.npz"), str(iris_csv)], "no such file"),
        (
            ["predict", str(iris_model), write(tmp_path / "three.csv", three_columns)],
            "lacks the model's feature column(s) ['sepal length (cm)', ",
        ),
        (["report", str(iris_csv)], "is not a valid concrete-qnn model file"),
        # Found by a helper: ignored silently, a traceback, or the input overwritten.
        (
            ["train", str(iris_csv), "--target", "target", "--dataset", "wine"],
            f"train either {iris_csv} or --dataset wine, not both",
        ),
        (["train", "--dataset", "iris", "--target", "x"], "--target names a column of a CSV"),
        (
            ["train", "--dataset", "iris", "--output", str(tmp_path / "no" / "m.npz")],
            f"no such directory for --output: {tmp_path / 'no'}",
        ),
        (
            ["predict", str(iris_model), str(iris_csv), "--output", str(iris_csv)],
            f"--output {iris_csv} would overwrite an input file",
        ),
        (["serve", str(tmp_path), "--port", "-5"], "port must be an integer from 0 to 65535"),
        (["serve", str(tmp_path), "--port", "99999"], "port must be an integer from 0 to 65535"),
        (
            ["serve", str(tmp_path), "--max-ciphertext-mb", "inf"],
            "max_ciphertext_mb must be positive and finite, got inf",
        ),
    ]
    csv_before = iris_csv.read_bytes()
    for arguments, message in cases:
        assert main([*arguments, *(["--no-progress"] if arguments[0] == "train" else [])]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (arguments, err)
        assert err.startswith("concrete-qnn: error: ")
    assert iris_csv.read_bytes() == csv_before
    assert not (tmp_path / "no").exists()


# ---------------------------------------------------------------------- real CSV files
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def with_cell(row, column, value):
    """An edit that sets one cell; ``row`` counts data rows from 1, as the messages do."""

    def edit(frame):
        frame = frame.astype({column: object}) if isinstance(value, str) else frame.copy()
        frame.loc[row - 1, column] = value
        return frame

    return edit


# case -> (edit of the iris frame, or the file's text; None when the command succeeds, else
# the fragments of the one-line message). Rows 2 and 4 fall in train's training and held-out
# splits (on main the NaN gave the NaN error in one and an IndexError in the other).
TRAIN_CASES = {
    "missing target column": (lambda f: f.drop(columns="target"), ["no target column 'target'"]),
    "extra numeric column": (lambda f: f.assign(id=np.arange(len(f)) % 7), None),
    "extra text column": (
        lambda f: f.assign(id=[f"plant-{i}" for i in range(len(f))]),
        ["data row 1, column 'id': 'plant-0' is not a number"],
    ),
    "reordered columns": (lambda f: f[f.columns[::-1]], None),
    "NaN feature in a training row": (
        with_cell(2, "sepal width (cm)", np.nan),
        ["data row 2, column 'sepal width (cm)': missing value"],
    ),
    "NaN feature in a held-out row": (
        with_cell(4, "petal length (cm)", np.nan),
        ["data row 4, column 'petal length (cm)': missing value"],
    ),
    "infinite feature": (
        with_cell(9, "petal width (cm)", np.inf),
        ["data row 9, column 'petal width (cm)': infinite value"],
    ),
    "missing label": (with_cell(5, "target", np.nan), ["data row 5, column 'target': missing"]),
    "non-numeric value": (
        with_cell(6, "sepal length (cm)", "5,1"),
        ["data row 6, column 'sepal length (cm)': '5,1' is not a number"],
    ),
    "empty file": ("", ["cannot read", "as CSV"]),
    "header only": (",".join([*FEATURES, "target"]) + "\n", ["has no data rows"]),
}
PREDICT_CASES = {
    "missing feature column": (
        lambda f: f.drop(columns="petal width (cm)"),
        ["lacks the model's feature column(s) ['petal width (cm)']"],
    ),
    "missing feature column, numeric target": (
        lambda f: f.drop(columns="petal width (cm)").assign(target=np.arange(len(f)) % 3),
        ["lacks the model's feature column(s) ['petal width (cm)']"],
    ),
    "extra column": (lambda f: f.assign(id=[f"plant-{i}" for i in range(len(f))]), None),
    "reordered columns": (lambda f: f[f.columns[::-1]], None),
    "no target column": (lambda f: f.drop(columns="target"), None),
    "missing label": (with_cell(5, "target", np.nan), None),
    "NaN feature": (
        with_cell(7, "sepal width (cm)", np.nan),
        ["data row 7, column 'sepal width (cm)': missing value"],
    ),
    "infinite feature": (
        with_cell(9, "petal width (cm)", -np.inf),
        ["data row 9, column 'petal width (cm)': infinite value"],
    ),
    "non-numeric value": (
        with_cell(3, "petal length (cm)", "n/a?"),
        ["data row 3, column 'petal length (cm)': 'n/a?' is not a number"],
    ),
    "empty file": ("", ["cannot read", "as CSV"]),
    "header only": (",".join([*FEATURES, "target"]) + "\n", ["has no data rows"]),
}


def write_case(path, iris_csv, edit):
    if isinstance(edit, str):
        path.write_text(edit)
    else:
        edit(pd.read_csv(iris_csv)).to_csv(path, index=False)
    return str(path)


def assert_refused_writing_nothing(arguments, output, fragments, capsys):
    """Exit status 2 and one error line naming the problem; stdout empty, ``output``
    neither created nor overwritten."""
    for existing in (False, True):
        output.unlink(missing_ok=True)
        if existing:
            output.write_text("earlier results\n")
        assert main([*arguments, "--output", str(output)]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith("concrete-qnn: error: ") and captured.err.count("\n") == 1
        assert all(fragment in captured.err for fragment in fragments), captured.err
        assert captured.out == ""
        assert output.read_text() == "earlier results\n" if existing else not output.exists()


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_on_real_csv_files(iris_csv, tmp_path, capsys, case):
    edit, fragments = TRAIN_CASES[case]
    csv = write_case(tmp_path / "data.csv", iris_csv, edit)
    arguments = ["train", csv, "--target", "target", "--epochs", "2", "--no-progress"]
    output = tmp_path / "model.npz"
    if fragments is not None:
        assert_refused_writing_nothing(arguments, output, fragments, capsys)
        return
    assert main([*arguments, "--output", str(output)]) == 0
    model = load(output)
    frame = pd.read_csv(csv)
    assert list(model.feature_names) == [c for c in frame.columns if c != "target"]
    # by name: the model trained on these columns predicts the original file identically
    capsys.readouterr()
    assert main(["predict", str(output), csv]) == 0
    on_this_file = capsys.readouterr().out
    if case == "reordered columns":
        assert main(["predict", str(output), str(iris_csv)]) == 0
        assert capsys.readouterr().out == on_this_file


@pytest.mark.parametrize("case", list(PREDICT_CASES))
def test_predict_on_real_csv_files(iris_csv, iris_model, tmp_path, capsys, case):
    edit, fragments = PREDICT_CASES[case]
    csv = write_case(tmp_path / "data.csv", iris_csv, edit)
    output = tmp_path / "predictions.csv"
    if fragments is not None:
        assert_refused_writing_nothing(["predict", str(iris_model), csv], output, fragments, capsys)
        return
    assert main(["predict", str(iris_model), csv, "--output", str(output)]) == 0
    assert (
        main(["predict", str(iris_model), str(iris_csv), "--output", str(tmp_path / "o.csv")]) == 0
    )
    pd.testing.assert_frame_equal(pd.read_csv(output), pd.read_csv(tmp_path / "o.csv"))


# ---------------------------------------------------------------------- what train infers
def issue_frame(rows, seed=0):
    """Five features ``f0..f4`` (the header of the file in issue #31) and a linear score."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 5)), columns=[f"f{i}" for i in range(5)])
    return frame, frame.to_numpy() @ np.array([1.0, 0.5, -0.7, 0.3, 0.2])


def train_out(capsys, csv, *arguments):
    arguments = [str(argument) for argument in arguments]
    status = main(["train", str(csv), *arguments, "--epochs", "1", "--no-progress"])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_error_line(status, out, err, *fragments):
    assert status == 2 and out == ""
    assert err.startswith("concrete-qnn: error: ") and err.count("\n") == 1, err
    assert all(fragment in err for fragment in fragments), err


def test_a_semicolon_csv_is_read_at_its_separator(tmp_path, capsys):
    # Found by a new user (#31): the header was read as one column, "no target column".
    frame, score = issue_frame(40)
    frame["label"] = (score > 0).astype(int)
    frame.to_csv(tmp_path / "data.csv", sep=";", index=False)
    assert (tmp_path / "data.csv").read_text().startswith("f0;f1;f2;f3;f4;label\n")
    model = tmp_path / "model.npz"
    status, out, _ = train_out(
        capsys, tmp_path / "data.csv", "--target", "label", "--output", model
    )
    assert status == 0
    assert "separator: ';' (it splits the first 41 lines into 6 columns each); pass --sep" in out
    assert list(load(model).feature_names) == [f"f{i}" for i in range(5)]
    assert main(["predict", str(model), str(tmp_path / "data.csv")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 41


def test_a_header_read_as_one_column_names_sep(tmp_path, capsys):
    frame, score = issue_frame(40)
    frame["label"] = (score > 0).astype(int)
    frame.to_csv(tmp_path / "spaces.csv", sep=" ", index=False)  # no separator it tries
    status, out, err = train_out(capsys, tmp_path / "spaces.csv", "--target", "label")
    assert_one_error_line(
        status,
        out,
        err,
        "no target column 'label'; the header was read as one column ('f0 f1 f2 f3 f4 label') "
        "split at ',': pass --sep",
    )
    model = tmp_path / "model.npz"
    arguments = ["--target", "label", "--sep", " ", "--output", model]
    status, out, _ = train_out(capsys, tmp_path / "spaces.csv", *arguments)
    assert status == 0 and "separator: ' ' (--sep)\n" in out
    assert main(["predict", str(model), str(tmp_path / "spaces.csv")]) == 2
    assert "lacks the model's feature column(s) ['f0', 'f1', " in capsys.readouterr().err
    assert main(["predict", str(model), str(tmp_path / "spaces.csv"), "--sep", " "]) == 0


def test_sep_is_one_character_and_with_task_only_for_a_csv_file(tmp_path, capsys):
    frame, score = issue_frame(40)
    frame["label"] = (score > 0).astype(int)
    frame.to_csv(tmp_path / "tabs.tsv", sep="\t", index=False)
    for written in ("tab", "\\t", "\t"):
        status, out, _ = train_out(
            capsys, tmp_path / "tabs.tsv", "--target", "label", "--sep", written
        )
        assert status == 0 and "separator: '\\t' (--sep)\n" in out
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tmp_path / "tabs.tsv"), "--target", "label", "--sep", ";;"])
    assert exit_.value.code == 2
    assert "argument --sep: ';;' is not a separator: give one character" in capsys.readouterr().err
    for option, value in (("--sep", ";"), ("--task", "regression")):
        status = main(["train", "--dataset", "iris", option, value])
        assert_one_error_line(status, *capsys.readouterr(), f"{option} is for a CSV file, not a")


def test_an_integer_target_with_many_values_is_a_regression(tmp_path, capsys):
    # Found by a new user (#31): 51 integer values on 5,000 rows trained silently as 51
    # classes (held-out accuracy 0.20, R^2 0.96 as a regression). 2,600 rows kept it a
    # classification then too (at most max(20, rows // 50) distinct values were classes).
    frame, score = issue_frame(2600)
    frame["label"] = np.clip(np.round(25 + 8 * score), 0, 50).astype(int)
    assert frame["label"].nunique() == 51
    frame.to_csv(tmp_path / "data.csv", index=False)
    status, out, _ = train_out(capsys, tmp_path / "data.csv", "--target", "label")
    assert status == 0
    assert (
        "task: regression (whole-number target with 51 distinct values, more than 20); "
        "pass --task classification to fit a classifier\n"
    ) in out
    assert "held-out R^2: " in out


def test_classes_too_few_to_split_are_refused_naming_task_regression(tmp_path, capsys):
    # Found by a new user (#31): scikit-learn's "least populated classes" message instead.
    frame, score = issue_frame(1000)
    price = np.round(np.exp(6 + 0.4 * score)).astype(int)  # 1-row prices at both ends
    # inferred: 20 values (the old rule's threshold at 1,000 rows), one of them on one row
    grade = pd.Series(np.r_[np.arange(999) % 19, 19]).sample(frac=1, random_state=0).to_numpy()
    cases = [  # (file, train's arguments, the error's fragments)
        (
            frame.assign(price=price),
            ["--target", "price", "--task", "classification"],
            [
                f"classes of 'price' have a single row ([{price.min()}, ",
                "the held-out split needs at least 2 rows per class: pass --task regression",
            ],
        ),
        (
            frame.assign(grade=grade),
            ["--target", "grade"],
            ["1 of the 20 classes of 'grade' have a single row ([19])", "--task regression"],
        ),
        (  # 12 classes of 2 rows: the 6 held-out rows cannot hold each class
            frame.head(24).assign(kind=[f"kind-{i // 2}" for i in range(24)]),
            ["--target", "kind"],
            [
                "12 classes of 'kind' do not fit 18 training and 6 held-out rows",
                "merge or drop the rare classes, or add rows",  # text: no regression
            ],
        ),
    ]
    for data, arguments, fragments in cases:
        data.to_csv(tmp_path / "data.csv", index=False)
        assert_one_error_line(*train_out(capsys, tmp_path / "data.csv", *arguments), *fragments)


DIALECTS = {  # name -> pandas.to_csv keywords, feature names
    "comma": ({"sep": ","}, ["a", "b", "c"]),
    "semicolon": ({"sep": ";"}, ["a", "b", "c"]),
    "tab": ({"sep": "\t"}, ["a", "b", "c"]),
    "pipe": ({"sep": "|"}, ["a", "b", "c"]),
    "quoted, comma": (
        {"sep": ",", "quoting": csv.QUOTE_NONNUMERIC},
        ["width, mm", "depth; mm", "height|mm"],
    ),
    "quoted, semicolon": (
        {"sep": ";", "quoting": csv.QUOTE_NONNUMERIC},
        ["width, mm", "depth; mm", "height\tmm"],
    ),
    "header only": ({"sep": ";"}, ["a", "b", "c"]),
    "single column": ({"sep": ";"}, []),
}
TARGETS = {  # name -> values on 40 rows, the task line's start
    "strings": (
        ["cat, tabby", "dog; pug", "owl"] * 13 + ["owl"],
        "task: classification (text target with 3 distinct values; a regressor needs",
    ),
    "small integers": (
        np.arange(40) % 4,
        "task: classification (whole-number target with 4 distinct values, at most 20); "
        "pass --task regression",
    ),
    "many-valued integers": (
        np.arange(40) * 7 - 100,
        "task: regression (whole-number target with 40 distinct values, more than 20); "
        "pass --task classification",
    ),
    "floats": (
        np.linspace(-1, 1, 40).round(3),
        "task: regression (numeric target with fractions); pass --task classification",
    ),
    "booleans": (
        np.arange(40) % 2 == 0,
        "task: classification (boolean target with 2 distinct values; a regressor needs",
    ),
}


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_train_and_predict_over_csv_dialects_and_target_types(tmp_path, capsys, dialect, target):
    keywords, names = DIALECTS[dialect]
    values, task_line = TARGETS[target]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, len(names))), columns=names).assign(label=values)
    if dialect == "header only":
        frame = frame.head(0)
    csv_path = tmp_path / "data.csv"
    frame.to_csv(csv_path, index=False, **keywords)
    model = tmp_path / "model.npz"
    status, out, err = train_out(capsys, csv_path, "--target", "label", "--output", model)
    if dialect == "header only":
        assert_one_error_line(status, out, err, "has no data rows")
        return
    if dialect == "single column":
        assert_one_error_line(status, out, err, "no feature column besides the target 'label'")
        return
    assert status == 0, err
    separator = keywords["sep"]
    assert f"separator: {separator!r} (it splits the first 41 lines into 4 columns each)" in out
    assert task_line in out
    assert list(load(model).feature_names) == names
    assert main(["predict", str(model), str(csv_path)]) == 0
    predictions = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))["prediction"]
    assert len(predictions) == 40
    if task_line.startswith("task: classification"):
        assert set(predictions.astype(str)) <= set(frame["label"].astype(str))
