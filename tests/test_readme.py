"""README's two set-up commands stay true to the CLI and to CI."""

from pathlib import Path

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
