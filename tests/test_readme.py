"""README's two set-up commands stay true to the CLI and to CI; its figures, to the benchmarks."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("```bash")
    end = lines.index("```", start + 1)
    return [line for line in lines[start + 1 : end] if line and not line.startswith("#")]


def test_readme_opens_with_the_main_job_and_the_test_suite():
    main_job, tests = readme_commands()
    assert main_job.startswith("python3 -m venv .venv") and "pip install torch==2.13.0" in main_job
    assert main_job.endswith("concrete-qnn train")
    assert tests.startswith("python3 -m venv .venv") and "pip install torch==2.13.0" in tests


def test_ci_runs_exactly_the_readme_test_command():
    test_command = readme_commands()[1].split(" && ")[-1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci_lines[-1] == test_command
    assert 'pip install -q -e ".[test]"' in "\n".join(ci_lines)


def readme_results_table() -> list[str]:
    """The rows of the first table under README's "## Results" heading."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("## Results")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    table = [line for line in lines[start:end] if line.startswith("|")]
    return table[2:]  # the header and its separator name no figures


def test_readme_results_come_from_the_generated_benchmark_file():
    rows = readme_results_table()
    assert len(rows) == 5
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    for row in rows:
        dataset = row.split("|")[1].split()[0]
        figures = re.findall(r"\d+\.\d+", row)
        assert figures, row
        # each figure on the dataset's own line of RESULTS.md, not anywhere in the file
        lines = [line for line in results.splitlines() if line.startswith(f"| {dataset} |")]
        assert lines, dataset
        for figure in figures:
            assert any(figure in line for line in lines), (dataset, figure)


def test_readme_is_a_door_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), target


@pytest.mark.slow
def test_readme_example_runs_as_printed_and_the_encrypted_prediction_is_the_clear_one():
    pytest.importorskip("concrete.fhe")
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("```python")
    code = "\n".join(lines[start + 1 : lines.index("```", start + 1)])
    # a child process: concrete's runtime can hide the exit status of the one that executed
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert run.returncode == 0, run.stderr
    printed = run.stdout.splitlines()
    encrypted, clear = re.fullmatch(r"(\[.*\]) (\[.*\])", printed[-1]).groups()
    assert encrypted == clear
    # README quotes this output block verbatim
    quoted = lines[lines.index("```text") + 1 : lines.index("```", lines.index("```text") + 1)]
    assert printed == quoted
