"""``python -m benchmarks.scale``: GPU rows are reported beside, never inside, the CPU tables."""

import pytest

from benchmarks import scale

CPU_ROW = {
    "task": "classification",
    "n_rows": 100_000,
    "model": "qnn",
    "fit_s": 90.0,
    "peak_memory_bytes": 5e8,
    "score": 0.94,
    "batch_size": 2000,
    "epochs": 60,
}
GPU_ROW = {
    **CPU_ROW,
    "device": "cuda",
    "fit_s": 45.0,
    "score": 0.93,
    "gpu_peak_memory_bytes": 7e7,
    "machine": {"gpu": "NVIDIA H200", "cpus": 16, "torch": "2.11.0", "python": "3.12.3"},
}
MACHINE = {"cpus": 2, "threads": "1 torch/BLAS thread(s)", "note": "idle"}


def test_gpu_rows_sit_beside_the_cpu_row_of_the_same_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "TABLE", tmp_path / "SCALE.md")
    scale.write_report([GPU_ROW, CPU_ROW], MACHINE)
    text = (tmp_path / "SCALE.md").read_text()
    cpu_part, gpu_part = text.split("## On a GPU")
    assert "| 100,000 | QNN (defaults) | 2000 | 60 | 90.0 | 1.00 | 500 | 0.9400 |" in cpu_part
    assert "45.0" not in cpu_part
    assert (
        "| classification | 100,000 | QNN (defaults) | NVIDIA H200, 16 CPUs, torch 2.11.0 "
        "| 2000 | 60 | 45.0 | 90.0 | 0.50 | 70 | 0.9300 | 0.9400 |"
    ) in gpu_part


def test_cpu_only_results_have_no_gpu_section(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "TABLE", tmp_path / "SCALE.md")
    scale.write_report([CPU_ROW], MACHINE)
    assert "GPU" not in (tmp_path / "SCALE.md").read_text()


def test_scikit_learns_mlp_is_refused_on_a_gpu_before_any_fit(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(scale, "RESULTS", tmp_path / "results.json")
    with pytest.raises(SystemExit):
        scale.main(["--device", "cuda", "--sizes", "1e3"])
    assert "scikit-learn's MLP runs on the CPU only" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()
