"""The docs site's sources stay whole without building it (CI builds it with --strict)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.MULTILINE)


def doc_pages() -> list[Path]:
    return [page for page in DOCS.rglob("*.md") if "generated" not in page.parts]


def test_every_generated_benchmark_file_is_included_not_copied():
    included = {target for page in doc_pages() for target in SNIPPET.findall(page.read_text())}
    for generated in sorted((ROOT / "benchmarks").glob("*.md")):
        assert f"benchmarks/{generated.name}" in included, generated.name
    assert "CHANGELOG.md" in included
    for target in included:
        assert (ROOT / target).is_file(), target


def test_nav_names_existing_pages():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from pages(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)

    for page in pages(config["nav"]):
        if page != "generated/gallery":  # mkdocs-gallery writes it from examples/
            assert (DOCS / page).is_file(), page


def test_gallery_examples_are_sphinx_gallery_scripts():
    examples = sorted((ROOT / "examples").glob("plot_*.py"))
    assert len(examples) >= 3
    for example in examples:
        text = example.read_text()
        assert text.startswith('"""\n# '), example.name  # a title for the gallery page
        assert "# %%" in text, example.name
