"""The integer model and its file formats (numpy only: no torch, no concrete, no pickle).

``IntegerModel`` (``model``) holds a trained network as validated integer arrays
(``validation``) and evaluates it exactly; ``ModelIO`` and ``OutputHead`` (``io``) are its clear
ends; ``model_file`` writes and reads its ``.npz`` file; ``formats`` declares every file format,
the content digest and the JSON layout that the model files and the deployment artifacts share.
"""

from concrete_qnn.integer.formats import CONFIG_KEYS, MODEL_FILE
from concrete_qnn.integer.io import ModelIO, OutputHead, target_statistic
from concrete_qnn.integer.model import BATCH_ROWS, IntegerModel, load
from concrete_qnn.integer.validation import MAX_LOOKUP_BITS, require_lookup_bits

# Version of the .npz model files this package writes and reads.
FORMAT_VERSION = MODEL_FILE.version

__all__ = [
    "BATCH_ROWS",
    "CONFIG_KEYS",
    "FORMAT_VERSION",
    "MAX_LOOKUP_BITS",
    "IntegerModel",
    "ModelIO",
    "OutputHead",
    "load",
    "require_lookup_bits",
    "target_statistic",
]
