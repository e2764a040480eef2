"""``concrete-qnn serve``: the FHE server behind HTTP (Starlette on uvicorn, the ``serve`` extra).

Endpoints (errors are JSON ``{"error": message}``: a 4xx for a request the server refuses, a
5xx for a fault of the server itself, which keeps serving: 507 when its disk is full or
read-only, 500 for another disk error or an unexpected exception, named in the message and
logged with its traceback):

- ``GET /health``: ``{"status": "ok", "circuit": fingerprint, "format_version", "packages"}``;
- ``GET /client``: the client artifact as a zip (``client.json``, ``client.specs.json``);
- ``POST /keys``: body = serialized evaluation keys; answers ``{"key_id": id}`` (201, or 200
  if already filed). The id is the keys' SHA-256, so a client can compute it itself. Keys are
  filed on disk as ``KEYS_DIR/<id>.bin`` and survive a restart. 413 over the size limit,
  422 if the body is not evaluation keys of this model (``FHEClient.evaluation_keys``);
- ``GET /keys/{id}``: 200 ``{"key_id", "bytes"}`` if filed and intact (the file's SHA-256
  is its id, its label names this model), else 404, so that a client uploads them (again):
  ``POST /keys`` replaces a filed copy that is not intact;
- ``POST /run/{id}``: body = one ciphertext; answers the result ciphertext
  (``application/octet-stream``). 404 for an unknown id, 413 over the size limit, 422 for a
  damaged ciphertext or keys that do not fit this model's circuit.

Keys labelled for another model are refused at upload (``deploy.evaluation_keys``).
Computations run in worker processes (``deploy.worker``), so keys that carry the right label
but make concrete abort cost a 422 and a worker restart, not the server. At start-up the
keys directory must be writable (else ``create_app`` raises ValueError), and upload files left
by a server stopped during an upload are removed (``deploy.key_files``), their number logged.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import math
import os
import re
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

from concrete_qnn.deploy import evaluation_keys, key_files
from concrete_qnn.deploy.artifacts import (
    CLIENT_FILES,
    FORMAT_VERSION,
    ClientArtifact,
    ServerArtifact,
    sha256_file,
)
from concrete_qnn.deploy.worker import WorkerCrashed, WorkerPool
from concrete_qnn.exceptions import ModelFileError

MB = 2**20
DEFAULT_MAX_KEY_MB = 4096
DEFAULT_MAX_CIPHERTEXT_MB = 64
_KEY_ID = re.compile(r"[0-9a-f]{64}")
# Disk faults answered 507 Insufficient Storage: the server cannot store what it is sent.
_STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
_log = logging.getLogger("uvicorn.error")


def _import_serve():
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ImportError(
            "the HTTP server needs starlette and uvicorn: pip install 'concrete-qnn[serve]'"
        ) from None


def create_app(
    directory,
    keys_dir=None,
    workers: int = 1,
    max_key_mb: float = DEFAULT_MAX_KEY_MB,
    max_ciphertext_mb: float = DEFAULT_MAX_CIPHERTEXT_MB,
):
    """The Starlette application serving ``directory`` (what ``save_fhe`` wrote).

    Parameters
    ----------
    directory : str or Path
        Holds ``client/`` (served at ``GET /client``) and ``server/`` (the circuit).
    keys_dir : str or Path or None
        Where uploaded evaluation keys are filed (created if missing; it must be writable);
        default ``directory / "evaluation_keys"``.
    workers : int
        Worker processes computing in parallel (each holds the circuit and up to
        ``worker.KEYS_CACHED`` deserialized evaluation keys in memory).
    max_key_mb, max_ciphertext_mb : float
        Request size limits in MiB (2^20 bytes), for ``POST /keys`` and ``POST /run``.

    Raises
    ------
    ModelFileError
        If an artifact is missing, damaged or mismatched (a ValueError).
    ValueError
        If a parameter is out of range, ``directory`` is one part of an artifact, or
        ``keys_dir`` cannot be created or written to.
    ImportError
        If starlette or uvicorn is missing.
    """
    _import_serve()
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    for name, value in (("max_key_mb", max_key_mb), ("max_ciphertext_mb", max_ciphertext_mb)):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be positive and finite, got {value!r}")
    directory = Path(directory)
    for part in ("server", "client"):
        if (directory / f"{part}.json").is_file():
            raise ValueError(
                f"{directory} is the {part} part of an artifact: pass the directory save_fhe "
                f"wrote ({directory.parent}), which holds server/ and client/"
            )
    server_artifact = ServerArtifact.load(directory / "server")
    client_artifact = ClientArtifact.load(directory / "client")
    if client_artifact.circuit != server_artifact.circuit:
        raise ModelFileError(
            f"{directory}: the client and server artifacts are of different models"
        )
    keys_dir = Path(keys_dir) if keys_dir is not None else directory / "evaluation_keys"
    key_files.check_keys_dir(keys_dir)
    client_zip = _zip(client_artifact.directory, CLIENT_FILES)
    max_key_bytes, max_ciphertext_bytes = int(max_key_mb * MB), int(max_ciphertext_mb * MB)
    pool: WorkerPool | None = None

    async def call_worker(method: str, *arguments):
        try:
            return await run_in_threadpool(pool.call, method, *arguments)
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        except WorkerCrashed as crash:
            if crash.aborted:
                raise HTTPException(
                    422,
                    f"{crash}: concrete aborted; the evaluation keys do not fit this model's "
                    "circuit (keys of another model?): upload keys made from this server's "
                    "client artifact (GET /client)",
                ) from None
            if crash.killed:
                raise HTTPException(503, f"{crash}: killed, e.g. out of memory") from None
            raise HTTPException(500, f"{crash}: an error in the server, see its log") from None

    def key_path(key_id: str) -> Path:
        if not _KEY_ID.fullmatch(key_id) or not (keys_dir / f"{key_id}.bin").is_file():
            raise HTTPException(404, f"unknown evaluation key id {key_id!r}: POST /keys first")
        return keys_dir / f"{key_id}.bin"

    def intact(path: Path) -> bool:
        """The key file hashes to its id and is labelled for this model's circuit."""
        with open(path, "rb") as file:
            header = file.read(evaluation_keys.HEADER_BYTES)
        try:
            evaluation_keys.unwrap(header, server_artifact.circuit)
        except ValueError:
            return False
        return sha256_file(path) == path.stem

    async def health(request):
        return JSONResponse(
            {
                "status": "ok",
                "circuit": server_artifact.circuit,
                "format_version": FORMAT_VERSION,
                "packages": server_artifact.packages,
            }
        )

    async def client(request):
        return Response(client_zip, media_type="application/zip")

    async def upload_keys(request):
        descriptor, temporary = key_files.new_upload(keys_dir)
        try:
            digest = hashlib.sha256()
            with os.fdopen(descriptor, "wb") as file:
                async for chunk in _body(request, max_key_bytes, "evaluation keys"):
                    digest.update(chunk)
                    file.write(chunk)
            key_id = digest.hexdigest()
            final = keys_dir / f"{key_id}.bin"
            if final.is_file() and await run_in_threadpool(intact, final):
                return JSONResponse({"key_id": key_id}, status_code=200)
            await call_worker("check_keys", temporary)
            os.replace(temporary, final)
            return JSONResponse({"key_id": key_id}, status_code=201)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    async def key_info(request):
        path = key_path(request.path_params["key_id"])
        if not await run_in_threadpool(intact, path):
            raise HTTPException(
                404,
                f"the evaluation keys filed under {path.stem!r} are damaged or of another "
                "model: POST /keys again",
            )
        return JSONResponse({"key_id": path.stem, "bytes": path.stat().st_size})

    async def run(request):
        key_id = key_path(request.path_params["key_id"]).stem
        ciphertext = b"".join(
            [chunk async for chunk in _body(request, max_ciphertext_bytes, "a ciphertext")]
        )
        result = await call_worker("run", key_id, ciphertext)
        return Response(result, media_type="application/octet-stream")

    async def error(request, exception):
        return JSONResponse({"error": exception.detail}, status_code=exception.status_code)

    async def server_fault(request, exception):
        """Any other exception, as JSON; Starlette then re-raises it for uvicorn to log."""
        if isinstance(exception, OSError):
            status = 507 if exception.errno in _STORAGE_ERRORS else 500
            cause = exception.strerror or exception
            message = f"the server could not read or write its files: {cause}"
        else:
            status = 500
            cause = str(exception).partition("\n")[0]
            message = f"an unexpected error in the server: {type(exception).__name__}: {cause}"
        return JSONResponse({"error": f"{message} (see its log)"}, status_code=status)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        nonlocal pool
        removed = key_files.remove_stale_uploads(keys_dir)
        _log.info("removed %d stale upload file(s) from %s", removed, keys_dir)
        pool = await run_in_threadpool(WorkerPool, server_artifact.directory, keys_dir, workers)
        try:
            yield
        finally:
            await run_in_threadpool(pool.close)

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/client", client, methods=["GET"]),
            Route("/keys", upload_keys, methods=["POST"]),
            Route("/keys/{key_id}", key_info, methods=["GET"]),
            Route("/run/{key_id}", run, methods=["POST"]),
        ],
        exception_handlers={HTTPException: error, Exception: server_fault},
        lifespan=lifespan,
    )


def serve(directory, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """Run ``create_app(directory, **options)`` on uvicorn at ``host:port`` until stopped.

    Raises
    ------
    ValueError
        If ``port`` is not an integer in 0..65535 (0: any free port), or ``create_app``
        refuses the directory or an option.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer from 0 to 65535, got {port!r}")
    app = create_app(directory, **options)
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")


@contextlib.contextmanager
def serve_in_subprocess(directory, *options: str, log=None, timeout: float = 120) -> Iterator[str]:
    """``concrete-qnn serve directory *options`` on 127.0.0.1 at a free port, in a subprocess.

    Yields the server's URL once ``GET /health`` answers; stops the server on exit.

    Parameters
    ----------
    directory : str or Path
        What ``save_fhe`` wrote.
    *options : str
        More command-line options, e.g. ``"--keys-dir", "keys"``.
    log : str or Path or None
        File the server's output is appended to (default: discarded).
    timeout : float
        Seconds to wait for the server to answer.

    Raises
    ------
    RuntimeError
        If the server exits or does not answer within ``timeout`` (its output attached).
    """
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "concrete_qnn", "serve", str(directory), *options]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with open(os.devnull if log is None else log, "a") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                text = "" if log is None else Path(log).read_text()
                raise RuntimeError(f"the server at {url} did not start:\n{text}")
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


async def _body(request, limit: int, what: str):
    """The request body in chunks; 413 as soon as it exceeds ``limit`` bytes."""
    from starlette.exceptions import HTTPException

    too_large = HTTPException(413, f"{what} over the limit of {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, f"invalid Content-Length {declared!r}")
        if int(declared) > limit:
            raise too_large
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large
        yield chunk


def _zip(directory: Path, names) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.write(directory / name, name)
    return buffer.getvalue()
