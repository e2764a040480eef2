"""A failing test fails the run, even after concrete-python executed a circuit.

concrete-python 2.11's runtime makes the process exit with status 0 once it has run a
circuit, whatever pytest asks; ``conftest.pytest_unconfigure`` exits with pytest's status
first. Without it, CI would report a run with failing FHE tests as green.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FAILING_AFTER_AN_ENCRYPTED_RUN = textwrap.dedent(
    """
    from concrete import fhe


    def test_fails_after_an_encrypted_run():
        @fhe.compiler({"x": "encrypted"})
        def add_one(x):
            return x + 1

        assert add_one.compile(range(4)).encrypt_run_decrypt(1) == 2
        assert False, "this failure must fail the run"
    """
)


def _run(directory: Path) -> subprocess.CompletedProcess:
    (directory / "test_after_fhe.py").write_text(FAILING_AFTER_AN_ENCRYPTED_RUN)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=directory, timeout=600, check=False
    )


@pytest.mark.slow
def test_the_suite_fails_when_a_test_fails_after_an_encrypted_run(tmp_path):
    with_hooks, without_hooks = tmp_path / "with", tmp_path / "without"
    with_hooks.mkdir()
    without_hooks.mkdir()
    (with_hooks / "conftest.py").write_text((Path(__file__).parent / "conftest.py").read_text())
    result = _run(with_hooks)
    assert "1 failed" in result.stdout, result.stdout
    assert result.returncode == 1
    # Why the hook exists: the same failing run without it exits 0.
    result = _run(without_hooks)
    assert "1 failed" in result.stdout, result.stdout
    assert result.returncode == 0
