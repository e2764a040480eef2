"""Evaluation keys on the wire: concrete-python's bytes behind the circuit's fingerprint.

Concrete does not check that evaluation keys belong to the circuit they are used with. Keys
of a circuit with other cryptographic parameters either make it abort the process or run and
return a wrong result without any error (measured: an iris model's keys on a breast_cancer
circuit answered a wrong label). ``FHEClient.evaluation_keys`` therefore puts a header naming
the circuit the keys were made for in front of concrete's serialization, and ``FHEServer``
refuses keys made for another circuit before concrete reads them.

Layout: ``MAGIC`` (16 bytes), the circuit's fingerprint (64 ASCII hex digits, the SHA-256 of
its client specs), then ``fhe.EvaluationKeys.serialize()``'s bytes.
"""

from __future__ import annotations

import re

MAGIC = b"concrete-qnn-key"
_FINGERPRINT = re.compile(rb"[0-9a-f]{64}")
HEADER_BYTES = len(MAGIC) + 64


def wrap(circuit: str, serialized: bytes) -> bytes:
    """Evaluation keys ``serialized`` by concrete, labelled with ``circuit``'s fingerprint."""
    return MAGIC + circuit.encode("ascii") + bytes(serialized)


def unwrap(data: bytes, circuit: str) -> bytes:
    """Concrete's serialized evaluation keys inside ``data``, checked to be ``circuit``'s.

    Raises
    ------
    ValueError
        If ``data`` does not start with the header ``wrap`` writes (not keys made by
        ``FHEClient.evaluation_keys``), or the keys were made for another circuit.
    """
    data = bytes(data)
    fingerprint = data[len(MAGIC) : HEADER_BYTES]
    if not data.startswith(MAGIC) or not _FINGERPRINT.fullmatch(fingerprint):
        raise ValueError(
            "these are not evaluation keys made by FHEClient.evaluation_keys() (no "
            "concrete-qnn key header)"
        )
    if fingerprint.decode("ascii") != circuit:
        raise ValueError(
            f"these evaluation keys were made for another model (circuit "
            f"{fingerprint.decode('ascii')[:12]}..., this one is {circuit[:12]}...): make keys "
            "from this model's client artifact"
        )
    return data[HEADER_BYTES:]
