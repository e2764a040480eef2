"""The two deployment artifacts ``save_fhe`` writes: data only, checked on load.

``DIRECTORY/client/`` (give it to data owners; public; ``GET /client`` of the HTTP server
serves it as a zip, which ``ClientArtifact.load`` reads as well):

- ``client.json``: format version, package versions, the circuit's fingerprint, the input
  quantizer (scale, code range, standardization), the output head (last-layer scales,
  classes or target shape and standardization), the feature names and the output offsets
  (``FHECircuit.output_offsets``: the circuit returns each output minus its certified lower
  end, so that it is never negative);
- ``client.specs.json``: concrete-python's ``ClientSpecs.serialize()`` (key and ciphertext
  parameters).

``DIRECTORY/server/`` (give it to the server; holds no key of any kind):

- ``server.json``: format version, package versions, the circuit's fingerprint and the
  SHA-256 of ``server.zip``;
- ``server.zip``: concrete-python's ``Server.save()`` (the compiled circuit).

The fingerprint is the SHA-256 of the client specs: a client, a server and evaluation keys
belong together when their fingerprints agree. Each JSON file carries the SHA-256 of its own
content (``"sha256"``, over the canonical JSON of its other entries), so an edited or
damaged file is refused even when it is still valid JSON. Nothing is unpickled on load; a
file that is damaged, of another format version, or written with another concrete-python is
refused with a ``ModelFileError`` (a ValueError). The format does not depend on how the
circuit was configured: it stores the compiled circuit and the integer model's clear ends
(``ModelIO``) only. Format names and versions, the digest and the JSON layout of ``ModelIO``
are ``concrete_qnn.integer.formats``'s, shared with the model files.
"""

from __future__ import annotations

import hashlib
import json
import os
import reprlib
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from concrete_qnn.exceptions import ModelFileError
from concrete_qnn.integer.formats import (
    FHE_CLIENT,
    FHE_SERVER,
    FileFormat,
    io_from_json,
    io_to_json,
    sha256_matches,
    with_sha256,
)
from concrete_qnn.integer.io import ModelIO

# The artifacts' format names and version (``formats.FHE_CLIENT`` and ``FHE_SERVER``).
FORMAT_VERSION = FHE_CLIENT.version
CLIENT_FORMAT = FHE_CLIENT.name
SERVER_FORMAT = FHE_SERVER.name
CLIENT_FILES = ("client.json", "client.specs.json")
SERVER_FILES = ("server.json", "server.zip")
# Largest member read from a zipped client artifact (its files are a few kB).
_MAX_MEMBER_BYTES = 16 * 2**20
# The package whose version must match between the writer and the reader: keys, ciphertexts
# and the compiled circuit are in its formats.
_RUNTIME = "concrete-python"


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages an artifact depends on (None if absent)."""
    versions = {}
    for name in ("concrete-qnn", _RUNTIME, "numpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def fingerprint(specs: bytes) -> str:
    """The circuit's fingerprint: SHA-256 (hex) of its serialized client specs."""
    return hashlib.sha256(specs).hexdigest()


def save_fhe(circuit, io: ModelIO, directory) -> Path:
    """Write the client and server artifacts of a compiled circuit to a new ``directory``.

    Parameters
    ----------
    circuit : FHECircuit
        The compiled circuit (its concrete circuit and ``output_offsets``).
    io : ModelIO
        The integer model's input quantizer and output head.
    directory : str or Path
        Must not exist, or be an empty directory. Written whole or not at all.

    Returns
    -------
    Path
        ``directory``; the artifacts are ``directory / "client"`` and ``directory / "server"``.

    Raises
    ------
    ValueError
        If ``directory`` exists and is not an empty directory.
    """
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(f"{directory} already exists and is not an empty directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        specs = circuit.circuit.client.specs.serialize()
        # Both JSON files name the packages that wrote them and the circuit's fingerprint.
        provenance = {"packages": package_versions(), "circuit": fingerprint(specs)}
        client_dir, server_dir = staging / "client", staging / "server"
        client_dir.mkdir()
        server_dir.mkdir()
        (client_dir / "client.specs.json").write_bytes(specs)
        _write_json(
            client_dir / "client.json",
            {
                **FHE_CLIENT.header(),
                **provenance,
                **io_to_json(io),
                "output_offsets": circuit.output_offsets.tolist(),
            },
        )
        circuit.circuit.server.save(server_dir / "server.zip")
        digest = sha256_file(server_dir / "server.zip")
        _write_json(
            server_dir / "server.json",
            {**FHE_SERVER.header(), **provenance, "server_zip_sha256": digest},
        )
        staging.chmod(0o755)  # mkdtemp made it private; an artifact is meant to be shared
        if directory.exists():
            directory.rmdir()
        os.rename(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


@dataclass(frozen=True)
class ClientArtifact:
    """A loaded client artifact: the model's clear ends and concrete's client specs.

    ``output_offsets`` (int64 (n_outputs,)): added to each decrypted output to give the
    last-layer accumulator (``FHECircuit.output_offsets``).
    """

    directory: Path
    io: ModelIO
    output_offsets: np.ndarray
    specs: bytes
    circuit: str
    packages: dict

    @classmethod
    def load(cls, directory) -> ClientArtifact:
        """Read and check ``directory``: ``save_fhe``'s ``DIRECTORY/client``, or the zip of
        it that the HTTP server's ``GET /client`` answers.

        Raises
        ------
        ModelFileError
            If the directory or zip does not exist, a file is missing, unreadable or
            damaged, the format version differs, or the artifact was written with another
            concrete-python.
        """
        directory = Path(directory)
        files = _client_files(directory)
        metadata = _check_header(directory / "client.json", files["client.json"], FHE_CLIENT)
        specs = files["client.specs.json"]
        if fingerprint(specs) != metadata["circuit"]:
            raise ModelFileError(
                f"{directory / 'client.specs.json'} is damaged: its SHA-256 does not match "
                "the fingerprint in client.json"
            )
        try:
            io = io_from_json(metadata)
            offsets = metadata["output_offsets"]
            if not (
                isinstance(offsets, list)
                and len(offsets) == len(io.output_scales)
                and all(isinstance(v, int) and not isinstance(v, bool) for v in offsets)
            ):
                raise ValueError(
                    f"output_offsets must be {len(io.output_scales)} integers, got "
                    f"{reprlib.repr(offsets)}"
                )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{directory / 'client.json'} is damaged: {error!r}") from None
        return cls(
            directory,
            io,
            np.asarray(offsets, dtype=np.int64),
            specs,
            metadata["circuit"],
            metadata["packages"],
        )


@dataclass(frozen=True)
class ServerArtifact:
    """A checked server artifact: where the compiled circuit is and its fingerprint."""

    directory: Path
    circuit_path: Path
    circuit: str
    packages: dict

    @classmethod
    def load(cls, directory) -> ServerArtifact:
        """Read and check ``directory`` (``save_fhe``'s ``DIRECTORY/server``).

        The SHA-256 of ``server.zip`` is checked before concrete ever loads it.

        Raises
        ------
        ModelFileError
            If a file is missing, unreadable or damaged, the format version differs, or
            the artifact was written with another concrete-python.
        """
        directory = Path(directory)
        _require_directory(directory, "server.json", "server")
        path = directory / "server.json"
        metadata = _check_header(path, _read_bytes(path), FHE_SERVER)
        circuit_path = directory / "server.zip"
        if not circuit_path.is_file():
            raise ModelFileError(f"{circuit_path} is missing")
        if sha256_file(circuit_path) != metadata.get("server_zip_sha256"):
            raise ModelFileError(
                f"{circuit_path} is damaged: its SHA-256 does not match server.json"
            )
        return cls(directory, circuit_path, metadata["circuit"], metadata["packages"])


# ---------------------------------------------------------------------- checks
def _require_directory(directory: Path, name: str, role: str) -> None:
    if not directory.is_dir():
        raise ModelFileError(f"no such directory: {directory}")
    if not (directory / name).is_file():
        raise ModelFileError(
            f"{directory} is not an FHE {role} artifact: {name} is missing (pass save_fhe's "
            f"DIRECTORY/{role})"
        )


def _client_files(path: Path) -> dict[str, bytes]:
    """The client artifact's files, from its directory or from a zip of it."""
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise ModelFileError(f"{path} is neither a client artifact directory nor a zip of one")
        try:
            with zipfile.ZipFile(path) as archive:
                files = {}
                for name in CLIENT_FILES:
                    info = archive.getinfo(name)
                    if info.file_size > _MAX_MEMBER_BYTES:
                        raise ModelFileError(f"{path}: {name} is over {_MAX_MEMBER_BYTES} bytes")
                    files[name] = archive.read(info)
                return files
        except KeyError as error:
            raise ModelFileError(f"{path} is not an FHE client artifact: {error}") from None
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as error:
            raise ModelFileError(f"{path} is damaged: {error!r}") from None
    _require_directory(path, "client.json", "client")
    return {name: _read_bytes(path / name) for name in CLIENT_FILES}


def _check_header(path: Path, content: bytes, file_format: FileFormat) -> dict:
    """The JSON ``content`` of ``path``, with its format, version, checksum, package
    versions and fingerprint checked."""
    try:
        metadata = json.loads(content)
    except (UnicodeDecodeError, ValueError) as error:
        raise ModelFileError(f"{path} is damaged: {error}") from None
    try:
        file_format.check(metadata)
    except ValueError as error:
        raise ModelFileError(f"{path} is not a valid {file_format.name} file: {error}") from None
    if not sha256_matches(metadata):
        raise ModelFileError(
            f"{path} is damaged or was edited: its content does not match its SHA-256"
        )
    packages = metadata.get("packages")
    if not isinstance(packages, dict) or not isinstance(metadata.get("circuit"), str):
        raise ModelFileError(f"{path} is damaged: it lacks the package versions or the fingerprint")
    installed = package_versions()[_RUNTIME]
    if packages.get(_RUNTIME) != installed:
        raise ModelFileError(
            f"{path} was written with {_RUNTIME} {packages.get(_RUNTIME)}, this environment "
            f"has {installed}: install that version, or compile and save_fhe the model again"
        )
    return metadata


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ModelFileError(f"cannot read {path}: {error}") from None


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(with_sha256(data), indent=1) + "\n")


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
