"""The 0.1 import paths (``concrete_qnn.integer_model``, ``concrete_qnn.model_io``) give the
same objects as ``concrete_qnn.integer``."""

import concrete_qnn
import concrete_qnn.integer as integer
import concrete_qnn.integer_model as integer_model
import concrete_qnn.model_io as model_io

OLD_NAMES = {
    integer_model: [
        "BATCH_ROWS",
        "CONFIG_KEYS",
        "FORMAT_VERSION",
        "MAX_LOOKUP_BITS",
        "IntegerModel",
        "OutputHead",
        "load",
    ],
    model_io: ["ModelIO", "target_statistic"],
}


def test_old_import_paths_give_the_same_objects():
    for module, names in OLD_NAMES.items():
        for name in names:
            assert getattr(module, name) is getattr(integer, name), (module.__name__, name)
    assert concrete_qnn.IntegerModel is integer.IntegerModel
    assert concrete_qnn.load is integer.load
