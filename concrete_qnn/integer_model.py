"""The 0.1 import path of the integer model: its public names, from ``concrete_qnn.integer``."""

from concrete_qnn.integer import BATCH_ROWS as BATCH_ROWS
from concrete_qnn.integer import CONFIG_KEYS as CONFIG_KEYS
from concrete_qnn.integer import FORMAT_VERSION as FORMAT_VERSION
from concrete_qnn.integer import MAX_LOOKUP_BITS as MAX_LOOKUP_BITS
from concrete_qnn.integer import IntegerModel as IntegerModel
from concrete_qnn.integer import OutputHead as OutputHead
from concrete_qnn.integer import load as load
