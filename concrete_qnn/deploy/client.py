"""The data owner's side: keys, quantization, encryption, decryption, predictions.

``FHEClient`` reads a client artifact (``save_fhe``'s ``DIRECTORY/client``), makes the keys
with concrete-python's client layer, applies a deployed pipeline's preprocessing, quantizes
rows with the model's own input quantizer and encrypts one ciphertext per row; after the
server's computation it decrypts and applies the model's output head, so ``predict`` equals
the estimator's (or the deployed pipeline's) ``predict(X, fhe="disable")``.
The secret key never leaves this object unless ``save_keys`` writes it to a file.

``FHEClient`` runs past this package's 250-line guide for a class (about 310 lines): it is
the data owner's whole surface, keys to predictions and the remote run that resumes after a
server fault, and about half of its lines are the public methods' docstrings. The remote run
(``run_remote``) is the part to move out first if it grows.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
from sklearn.utils import check_array

from concrete_qnn.deploy import evaluation_keys as key_format
from concrete_qnn.deploy.artifacts import ClientArtifact
from concrete_qnn.exceptions import ModelFileError, NotCompiledError, QNNError
from concrete_qnn.fhe import _import_fhe
from concrete_qnn.integer.formats import FHE_KEYS

# concrete-python reads seed 0 as "draw a random seed".
_MAX_SEED = 2**128


class ServerError(QNNError):
    """The HTTP server answered with an error (its status code and message), or did not
    answer (``ServerUnavailableError``).

    Attributes
    ----------
    status_code : int or None
        The HTTP status; None when the server did not answer.
    completed : list of bytes
        The result ciphertexts of the first rows, computed before the error: pass them back
        as ``completed=`` to ``run_remote`` or ``predict_remote`` to send only the other
        rows, or decrypt them (``FHEClient.predict(error.completed)``).
    """

    def __init__(
        self, status_code: int | None, message: str, completed=(), n_rows: int | None = None
    ):
        if status_code is not None:
            message = f"the server answered {status_code}: {message}"
        if n_rows is not None:
            message += (
                f"; {len(completed)} of {n_rows} rows were computed: pass completed="
                "error.completed to compute the others"
            )
        super().__init__(message)
        self.status_code = status_code
        self.completed = list(completed)


class ServerUnavailableError(ServerError):
    """The server could not be reached or stopped answering: connection refused or reset,
    a timeout, a server stopped during a request (``status_code`` is None)."""


class FHEClient:
    """Make keys, encrypt rows and decrypt results for one compiled model.

    Parameters
    ----------
    directory : str or Path
        The client artifact, ``DIRECTORY/client`` of ``model.save_fhe(DIRECTORY)``.

    Raises
    ------
    ModelFileError
        If the artifact is missing, damaged, of another format version or written with
        another concrete-python.
    """

    def __init__(self, directory):
        fhe = _import_fhe()
        self.artifact = ClientArtifact.load(directory)
        try:
            specs = fhe.ClientSpecs.deserialize(self.artifact.specs)
        except (RuntimeError, ValueError) as error:
            raise ModelFileError(f"{directory}: client.specs.json is damaged: {error}") from None
        self._client = fhe.Client(specs)
        self._has_keys = False
        self._evaluation_keys: bytes | None = None

    # ------------------------------------------------------------------ model
    @property
    def io(self):
        """The model's input quantizer and output head (``ModelIO``)."""
        return self.artifact.io

    @property
    def circuit(self) -> str:
        """Fingerprint of the circuit this client belongs to (SHA-256 hex)."""
        return self.artifact.circuit

    @property
    def feature_names(self) -> np.ndarray | None:
        """Feature names (n_features,) the model was fitted with, or None."""
        return self.io.feature_names

    # ------------------------------------------------------------------ keys
    def keygen(self, seed: int | None = None) -> None:
        """Generate a new secret key and its evaluation keys (replacing any held).

        Parameters
        ----------
        seed : int or None
            ``None`` draws the secret key at random; an integer in ``[1, 2**128)`` makes
            the same secret key every time (for tests; anyone with the seed can decrypt).
            The evaluation keys and ciphertexts always use fresh encryption randomness, so
            they differ between calls either way.

        Raises
        ------
        ValueError
            If ``seed`` is not None or an integer in ``[1, 2**128)``.
        """
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int) or not 1 <= seed < _MAX_SEED
        ):
            raise ValueError(f"seed must be None or an integer in [1, 2**128), got {seed!r}")
        self._client.keygen(force=True, secret_seed=seed)
        self._has_keys = True
        self._evaluation_keys = None

    def save_keys(self, path) -> None:
        """Write the keys (secret key included) to a new file only its owner can read.

        The file is a zip of ``keys.json`` (format version and circuit fingerprint) and
        ``keyset.bin`` (concrete-python's own serialization of the keyset).

        Raises
        ------
        NotCompiledError
            If no keys were generated or loaded (a RuntimeError).
        ValueError
            If ``path`` already exists.
        """
        self._require_keys()
        path = Path(path)
        if path.exists():
            raise ValueError(f"{path} already exists; keys are never overwritten")
        header = {**FHE_KEYS.header(), "circuit": self.circuit}
        # Readable by its owner only, and never replacing a file (O_EXCL).
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file, zipfile.ZipFile(file, "w") as archive:
            archive.writestr("keys.json", json.dumps(header))
            archive.writestr("keyset.bin", self._client.keys.serialize())

    def load_keys(self, path) -> None:
        """Read keys written by ``save_keys`` for this model.

        Raises
        ------
        ModelFileError
            If the file is missing, damaged, of another format version, or holds the keys
            of another model.
        """
        fhe = _import_fhe()
        path = Path(path)
        try:
            with zipfile.ZipFile(path) as archive:
                header = json.loads(archive.read("keys.json"))
                keyset = archive.read("keyset.bin")
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise ModelFileError(f"{path} is not a readable keys file: {error}") from None
        try:
            FHE_KEYS.check(header)
        except ValueError as error:
            raise ModelFileError(f"{path} is not a valid {FHE_KEYS.name} file: {error}") from None
        if header.get("circuit") != self.circuit:
            raise ModelFileError(f"{path} holds the keys of another model (circuit fingerprint)")
        try:
            keys = fhe.Keys.deserialize(keyset)
        except RuntimeError as error:
            raise ModelFileError(f"{path}: keyset.bin is damaged: {error}") from None
        self._client.keys = keys
        self._has_keys = True
        self._evaluation_keys = None

    def evaluation_keys(self) -> bytes:
        """The evaluation keys (no secret in them): concrete-python's serialization behind
        a header with this circuit's fingerprint (``deploy.evaluation_keys``), so that a
        server refuses them for another model.

        Raises
        ------
        NotCompiledError
            If no keys were generated or loaded (a RuntimeError).
        """
        self._require_keys()
        if self._evaluation_keys is None:
            serialized = self._client.evaluation_keys.serialize()
            self._evaluation_keys = key_format.wrap(self.circuit, serialized)
        return self._evaluation_keys

    def evaluation_key_id(self) -> str:
        """The id a server files the evaluation keys under: their SHA-256 (hex)."""
        return hashlib.sha256(self.evaluation_keys()).hexdigest()

    def _require_keys(self) -> None:
        if not self._has_keys:
            raise NotCompiledError("the client has no keys: call keygen() or load_keys(path) first")

    # ------------------------------------------------------------------ data
    def encrypt(self, X) -> list[bytes]:
        """One ciphertext per row of ``X``, preprocessed as the deployed pipeline's steps
        before the estimator (if ``deploy.save_fhe`` wrote the artifact from a pipeline) and
        quantized with the model's input quantizer (``ModelIO.quantize_input``, which warns
        with an ``InputRangeWarning`` when the values lie mostly far outside its range).

        Parameters
        ----------
        X : array-like or DataFrame (n_samples, n_columns)
            Finite numbers, validated as the estimator's ``predict`` validates them (in
            float64, quantized in float32 as the estimator does); the raw rows a deployed
            pipeline's ``predict`` takes. A DataFrame's columns must be the model's (or
            pipeline's) feature names, in order.

        Returns
        -------
        list of bytes
            ``n_samples`` serialized ``fhe.Value`` ciphertexts.

        Raises
        ------
        NotCompiledError
            If no keys were generated or loaded (a RuntimeError).
        ValueError
            If ``X`` is not finite, has another number of features, or other column names.
        """
        codes = self.io.quantize_input(self._validate(X))
        self._require_keys()
        return [self._client.encrypt(row).serialize() for row in codes]

    def decrypt(self, ciphertexts) -> np.ndarray:
        """Real outputs, float64 (n_samples, n_outputs), of the server's result ciphertexts.

        Raises
        ------
        NotCompiledError
            If no keys were generated or loaded (a RuntimeError).
        ValueError
            If a ciphertext is damaged or not a result of this model's circuit.
        TypeError
            If ``ciphertexts`` is one bytes object instead of a sequence of them.
        """
        fhe = _import_fhe()
        self._require_keys()
        if isinstance(ciphertexts, (bytes, bytearray, memoryview, str)):
            raise TypeError(
                "ciphertexts must be a sequence with one bytes object per row, got a single "
                f"{type(ciphertexts).__name__}: pass [ciphertext]"
            )
        rows = []
        for index, ciphertext in enumerate(ciphertexts):
            try:
                rows.append(self._client.decrypt(fhe.Value.deserialize(bytes(ciphertext))))
            except RuntimeError as error:
                raise ValueError(
                    f"ciphertext {index} is not a result of this model's circuit: {error}"
                ) from None
        n_outputs = len(self.io.output_scales)
        outputs = np.asarray(rows, dtype=np.int64).reshape(len(rows), n_outputs)
        return self.io.dequantize_output(outputs + self.artifact.output_offsets)

    def predict(self, ciphertexts) -> np.ndarray:
        """Labels (n_samples,) or targets from the server's result ciphertexts."""
        return self.io.predictions(self.decrypt(ciphertexts))

    def predict_proba(self, ciphertexts) -> np.ndarray:
        """Class probabilities, float64 (n_samples, n_classes); classifiers only."""
        return self.io.probabilities(self.decrypt(ciphertexts))

    def _validate(self, X) -> np.ndarray:
        names = self.feature_names
        columns = getattr(X, "columns", None)
        if columns is not None and names is not None and list(map(str, columns)) != list(names):
            raise ValueError(
                f"X has the columns {list(map(str, columns))}, the model was fitted with "
                f"{list(names)}: pass the same columns in the same order"
            )
        return check_array(X, dtype=np.float64)

    # ------------------------------------------------------------------ HTTP
    def run_remote(
        self, url: str, ciphertexts, timeout: float | None = None, completed=()
    ) -> list[bytes]:
        """Send ciphertexts to a ``concrete-qnn serve`` server; its result ciphertexts.

        Uploads the evaluation keys first unless the server already has them (they are
        filed under ``evaluation_key_id()``), after checking that the server runs this
        model's circuit.

        Parameters
        ----------
        url : str
            The server, e.g. ``"http://127.0.0.1:8000"``.
        ciphertexts : iterable of bytes
        timeout : float or None
            Seconds to wait for each answer (None: no limit; one row of a large model can
            take minutes).
        completed : sequence of bytes
            The results of the first ciphertexts from an earlier call that failed
            (``ServerError.completed``, with the same keys): those rows are not sent again.

        Returns
        -------
        list of bytes
            One result ciphertext per ciphertext, ``completed`` first.

        Raises
        ------
        ValueError
            If the server runs another model, or ``completed`` holds more results than
            there are ciphertexts.
        ServerError
            If the server refuses a request or fails; ``ServerUnavailableError`` if it
            cannot be reached or stops answering (a timeout included). Either carries the
            results computed so far as ``completed``, to resume with.
        """
        import httpx

        ciphertexts = [bytes(ciphertext) for ciphertext in ciphertexts]
        results = [bytes(result) for result in completed]
        if len(results) > len(ciphertexts):
            raise ValueError(
                f"completed holds {len(results)} results for {len(ciphertexts)} ciphertexts"
            )

        def checked(response):
            if response.status_code >= 400:
                message = _message(response)
                raise ServerError(response.status_code, message, results, len(ciphertexts))
            return response

        key_id = self.evaluation_key_id()
        try:
            with httpx.Client(base_url=url, timeout=httpx.Timeout(timeout, connect=10.0)) as http:
                health = checked(http.get("/health")).json()
                if health.get("circuit") != self.circuit:
                    raise ValueError(
                        f"the server at {url} runs another model (circuit "
                        f"{health.get('circuit')}, this client's is {self.circuit})"
                    )
                if http.get(f"/keys/{key_id}").status_code != 200:
                    answer = checked(http.post("/keys", content=self.evaluation_keys())).json()
                    if answer.get("key_id") != key_id:
                        raise ValueError(f"the server filed the keys under {answer.get('key_id')}")
                for ciphertext in ciphertexts[len(results) :]:
                    results.append(checked(http.post(f"/run/{key_id}", content=ciphertext)).content)
        except httpx.TransportError as error:
            raise ServerUnavailableError(
                None,
                f"the server at {url} did not answer ({type(error).__name__}: {error})",
                results,
                len(ciphertexts),
            ) from error
        return results

    def predict_remote(self, url: str, X, timeout: float | None = None, completed=()) -> np.ndarray:
        """Encrypt ``X``, have the server at ``url`` compute, decrypt: ``predict`` of ``X``.

        See ``run_remote`` for ``timeout`` and the errors raised. After a ``ServerError``,
        ``predict_remote(url, X, completed=error.completed)`` sends only the rows of ``X``
        the server had not computed (``client.predict(error.completed)``: the predictions
        of those it had).
        """
        return self.predict(self.run_remote(url, self.encrypt(X), timeout, completed))


def _message(response) -> str:
    """The server's message in an error response: its JSON "error", else its text."""
    try:
        return response.json().get("error", response.text)
    except ValueError:
        return response.text
