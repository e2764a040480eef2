"""The server's side: run the compiled circuit on ciphertexts with evaluation keys only.

``FHEServer`` loads a server artifact (``save_fhe``'s ``DIRECTORY/server``: the compiled
circuit and its checksums, no key of any kind) with concrete-python's ``fhe.Server``. It
never sees a secret key or a clear value.

Concrete checks a ciphertext's shape, but not that evaluation keys were made for this
circuit: keys of a circuit with other cryptographic parameters make it abort the process or
return a wrong result (measured with concrete-python 2.11). ``FHEClient.evaluation_keys``
labels keys with their circuit's fingerprint and ``load_evaluation_keys`` refuses another
circuit's (``deploy.evaluation_keys``); keys crafted to carry the right label can still make
concrete abort, so ``concrete-qnn serve`` runs ``FHEServer`` in worker processes
(``deploy.worker``).
"""

from __future__ import annotations

from concrete_qnn.deploy import evaluation_keys as key_format
from concrete_qnn.deploy.artifacts import ServerArtifact, fingerprint
from concrete_qnn.exceptions import ModelFileError
from concrete_qnn.fhe import _import_fhe


class FHEServer:
    """The compiled circuit of one model, ready to run on ciphertexts.

    Parameters
    ----------
    directory : str or Path
        The server artifact, ``DIRECTORY/server`` of ``model.save_fhe(DIRECTORY)``.

    Raises
    ------
    ModelFileError
        If the artifact is missing, damaged, of another format version or written with
        another concrete-python, or its server.zip does not hold the circuit server.json
        names.
    """

    def __init__(self, directory):
        self._fhe = _import_fhe()
        self.artifact = ServerArtifact.load(directory)
        self._server = self._fhe.Server.load(self.artifact.circuit_path)
        if fingerprint(self._server.client_specs.serialize()) != self.artifact.circuit:
            self._server.cleanup()
            raise ModelFileError(
                f"{self.artifact.circuit_path} does not hold the circuit server.json names"
            )

    @property
    def circuit(self) -> str:
        """Fingerprint of the circuit (SHA-256 hex of its client specs)."""
        return self.artifact.circuit

    def load_evaluation_keys(self, evaluation_keys: bytes):
        """Deserialize evaluation keys once, for several ``run`` calls.

        Raises
        ------
        ValueError
            If ``evaluation_keys`` are not ``FHEClient.evaluation_keys()`` of this model.
        """
        serialized = key_format.unwrap(evaluation_keys, self.circuit)
        try:
            return self._fhe.EvaluationKeys.deserialize(serialized)
        except RuntimeError as error:
            raise ValueError(f"these are not evaluation keys: {error}") from None

    def run(self, ciphertext: bytes, evaluation_keys) -> bytes:
        """The result ciphertext of one encrypted row.

        Parameters
        ----------
        ciphertext : bytes
            One row encrypted by ``FHEClient.encrypt``.
        evaluation_keys : bytes or the result of ``load_evaluation_keys``

        Returns
        -------
        bytes
            The encrypted last-layer accumulators, for ``FHEClient.decrypt``.

        Raises
        ------
        ValueError
            If the ciphertext or the keys are damaged, or the ciphertext is not an input
            of this circuit.
        """
        if isinstance(evaluation_keys, (bytes, bytearray, memoryview)):
            evaluation_keys = self.load_evaluation_keys(evaluation_keys)
        try:
            value = self._fhe.Value.deserialize(bytes(ciphertext))
        except RuntimeError as error:
            raise ValueError(f"the ciphertext is damaged: {error}") from None
        try:
            result = self._server.run(value, evaluation_keys=evaluation_keys)
        except RuntimeError as error:
            raise ValueError(f"the ciphertext is not an input of this circuit: {error}") from None
        return result.serialize()

    def close(self) -> None:
        """Remove the directory concrete unpacked the circuit into."""
        self._server.cleanup()

    def __enter__(self) -> FHEServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
