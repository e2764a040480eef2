"""notebooks/quickstart.ipynb runs from top to bottom and shows what it says it shows."""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

# The module's fixture executes the whole notebook (about 30 s).
pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    folder = tmp_path_factory.mktemp("notebook")
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}}
    ).execute()
    return notebook


def _tagged(notebook, tag):
    (cell,) = [c for c in notebook.cells if tag in c.metadata.get("tags", [])]
    return cell


def _summary(notebook) -> dict:
    text = "".join(o.text for o in _tagged(notebook, "summary").outputs if "text" in o)
    return json.loads(text)


def test_the_notebook_reports_an_accurate_certified_model(executed):
    summary = _summary(executed)
    assert summary["test_accuracy"] >= 0.93
    assert summary["certificate_holds"] is True
    assert summary["certificate_max_bits"] <= summary["n_accum_bits"] == 8
    assert summary["search_best_certificate_holds"] is True
    assert summary["search_best_params"]["module__n_w_bits"] in (2, 3)
    assert summary["search_best_params"]["module__n_a_bits"] in (2, 3)


def test_the_notebook_prunes_and_deploys_without_changing_predictions(executed):
    summary = _summary(executed)
    before, after = summary["hidden_widths"]
    assert after == [width // 2 for width in before]
    assert summary["pruned_accuracy"] >= 0.9
    assert summary["integer_agrees_with_torch"] == 1.0
    assert summary["rounded_agrees_with_torch"] >= 0.97
    assert summary["loaded_agrees"] == 1.0
    assert summary["fhe_agrees"] == 1.0  # the test extra installs concrete-python


def test_the_notebook_plots_the_certificate_and_shows_its_tables(executed):
    plot_cells = [
        c
        for c in executed.cells
        if c.cell_type == "code" and any("image/png" in o.get("data", {}) for o in c.outputs)
    ]
    assert len(plot_cells) == 1
    assert "max accumulator: 8 bits, bound 8 bits: holds" in "".join(
        o.get("text", "") for o in plot_cells[0].outputs
    )
    tables = [
        o["data"]["text/html"]
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text/html" in o.get("data", {})
    ]
    assert any("fan_in" in table and "fc0" in table for table in tables)  # the certificate
    assert any("mean_test_score" in table for table in tables)  # the grid search
