"""The 0.1 import path of the integer model's clear ends: ``concrete_qnn.integer``'s names."""

from concrete_qnn.integer import ModelIO as ModelIO
from concrete_qnn.integer import target_statistic as target_statistic
