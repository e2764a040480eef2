"""MkDocs hooks for the docs site (mkdocs.yml names this file under ``hooks``).

- The benchmark pages include the generated ``benchmarks/*.md`` files with pymdownx.snippets;
  their images are relative links (``accuracy_vs_accum_bits.png``), so each PNG of
  ``benchmarks/`` is added to the site next to the page that includes it, without a copy
  under ``docs/``.
- The gallery's examples run in this process: one torch/BLAS thread unless the caller chose
  otherwise, since their small fits spend their time in per-step overhead and several
  threads on a shared or small machine make them many times slower.
"""

import os
from pathlib import Path

from mkdocs.structure.files import File

BENCHMARKS = Path(__file__).resolve().parent / "benchmarks"

# Before the gallery imports torch or numpy (hooks load with the configuration).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def on_files(files, config):
    for plot in sorted(BENCHMARKS.glob("*.png")):
        files.append(File.generated(config, f"benchmarks/{plot.name}", abs_src_path=str(plot)))
    return files
