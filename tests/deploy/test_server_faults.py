"""Faults of the server's disk, process and network (#31): refused at start-up, answered as
JSON 5xx, cleaned up at the next start, survived by the client with the rows computed."""

import errno
import hashlib
import io
import os
import re
import signal
import tempfile
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn
from starlette.testclient import TestClient

from concrete_qnn.cli import main
from concrete_qnn.deploy import ServerError, ServerUnavailableError, http_server, key_files
from concrete_qnn.deploy import evaluation_keys as key_format
from concrete_qnn.deploy.http_server import create_app, serve_in_subprocess
from concrete_qnn.deploy.worker import ServerProcess
from concrete_qnn.exceptions import QNNError


def _os_error(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


def _read_only(monkeypatch, keys_dir):
    monkeypatch.setattr(tempfile, "TemporaryFile", _os_error(errno.EROFS))
    return keys_dir


@pytest.mark.parametrize(
    "keys_dir, cause",
    [
        (lambda monkeypatch, tmp: tmp / "file", "is a file, not a directory"),
        (lambda monkeypatch, tmp: tmp / "file" / "keys", "cannot be created or written to: Not a"),
        (
            lambda monkeypatch, tmp: _read_only(monkeypatch, tmp / "keys"),
            "cannot be created or written to: Read-only file system",
        ),
    ],
    ids=["a file", "under a file", "read-only"],
)
def test_a_keys_dir_that_cannot_be_written_stops_serve_with_status_2(
    deployed, tmp_path, monkeypatch, capsys, keys_dir, cause
):
    _, directory, _ = deployed
    (tmp_path / "file").write_text("")
    keys_dir = keys_dir(monkeypatch, tmp_path)
    # It used to start, then answer every upload with a plain-text 500.
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("it started"))
    assert main(["serve", str(directory), "--keys-dir", str(keys_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"concrete-qnn: error: the keys directory {keys_dir} {cause}")
    assert err.count("\n") == 1


def _file_keys(keys_dir, circuit):
    """A key file with a valid header (its id is its SHA-256): ``GET /keys/{id}`` reads it."""
    content = key_format.wrap(circuit, b"not checked")
    key_id = hashlib.sha256(content).hexdigest()
    keys_dir.mkdir(exist_ok=True)
    (keys_dir / f"{key_id}.bin").write_bytes(content)
    return key_id


class _FullDisk(io.FileIO):
    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# fault injected, request, status, message
FAULTS = {
    "read-only keys dir at upload": (
        lambda monkeypatch: monkeypatch.setattr(tempfile, "mkstemp", _os_error(errno.EROFS)),
        "POST /keys",
        507,
        "could not read or write its files: Read-only file system",
    ),
    "disk full while writing keys": (
        lambda monkeypatch: monkeypatch.setattr(os, "fdopen", lambda fd, mode: _FullDisk(fd, "w")),
        "POST /keys",
        507,
        "could not read or write its files: No space left on device",
    ),
    "disk error reading keys": (
        lambda monkeypatch: monkeypatch.setattr(http_server, "sha256_file", _os_error(errno.EIO)),
        "GET /keys/{key_id}",
        500,
        "could not read or write its files: Input/output error",
    ),
    "an unexpected exception": (
        lambda monkeypatch: monkeypatch.setattr(
            http_server, "sha256_file", lambda path: {}["injected"]
        ),
        "GET /keys/{key_id}",
        500,
        "an unexpected error in the server: KeyError: 'injected'",
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_in_a_request_is_answered_as_json_5xx_and_serving_goes_on(
    deployed, tmp_path, monkeypatch, fault
):
    _, directory, client = deployed
    inject, request, status, message = FAULTS[fault]
    keys_dir = tmp_path / "keys"
    key_id = _file_keys(keys_dir, client.circuit)
    http = TestClient(create_app(directory, keys_dir=keys_dir), raise_server_exceptions=False)
    inject(monkeypatch)
    method, path = request.split()
    answer = http.request(method, path.format(key_id=key_id), content=b"keys" * 1000)
    monkeypatch.undo()
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert message in error and error.endswith("(see its log)"), error
    assert sorted(p.name for p in keys_dir.iterdir()) == [f"{key_id}.bin"]  # no upload left
    assert http.get("/health").json()["status"] == "ok"


def test_start_up_removes_the_uploads_no_server_holds(tmp_path):
    stale = tmp_path / ".upload-left-by-a-killed-server"
    stale.write_bytes(b"\0" * 100)
    descriptor, running = key_files.new_upload(tmp_path)  # another server's upload
    try:
        assert key_files.remove_stale_uploads(tmp_path) == 1
        assert not stale.exists() and os.path.exists(running)
    finally:
        os.close(descriptor)
    assert key_files.remove_stale_uploads(tmp_path) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # a worker process loads the circuit
def test_a_disk_fault_in_a_worker_is_an_os_error_not_a_refusal(deployed, tmp_path):
    _, directory, _ = deployed
    worker = ServerProcess(directory / "server", tmp_path)
    try:
        with pytest.raises(FileNotFoundError, match="No such file or directory"):
            worker.run("0" * 64, b"")  # its keys are gone from the disk
    finally:
        worker.close()


def _pid(log):
    """The server's process id, as uvicorn logs it."""
    return int(re.findall(r"Started server process \[(\d+)\]", log.read_text())[-1])


def _wait_for(condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow  # two servers in subprocesses
def test_an_upload_left_by_a_killed_server_is_removed_at_the_next_start(deployed, tmp_path):
    _, directory, _ = deployed
    keys_dir, first_log, second_log = tmp_path / "keys", tmp_path / "1.log", tmp_path / "2.log"
    release = threading.Event()

    def slow_body():
        yield b"\0" * 2**16
        release.wait(60)

    def upload():
        with pytest.raises(httpx.TransportError):
            httpx.post(f"{url}/keys", content=slow_body())

    with serve_in_subprocess(directory, "--keys-dir", str(keys_dir), log=first_log) as url:
        upload = threading.Thread(target=upload)
        upload.start()
        _wait_for(lambda: list(keys_dir.glob(".upload-*")), "the upload's file")
        os.kill(_pid(first_log), signal.SIGKILL)
        release.set()
        upload.join(60)
    (left,) = keys_dir.glob(".upload-*")
    with serve_in_subprocess(directory, "--keys-dir", str(keys_dir), log=second_log):
        assert not left.exists()
        assert f"removed 1 stale upload file(s) from {keys_dir}" in second_log.read_text()


@pytest.mark.slow  # a server killed mid-run, and another one
def test_a_run_cut_by_a_killed_server_resumes_to_the_local_result(iris, deployed, tmp_path):
    X, _ = iris
    X = X[::25]  # 6 rows
    model, directory, client = deployed
    keys_dir, first_log, second_log = tmp_path / "keys", tmp_path / "1.log", tmp_path / "2.log"
    failures = []

    def predict():
        try:
            client.predict_remote(url, X, timeout=120)
        except ServerError as error:
            failures.append(error)

    with serve_in_subprocess(directory, "--keys-dir", str(keys_dir), log=first_log) as url:
        thread = threading.Thread(target=predict)
        thread.start()
        _wait_for(lambda: first_log.read_text().count("POST /run") >= 2, "two rows")
        os.kill(_pid(first_log), signal.SIGKILL)
        thread.join(120)
    (error,) = failures
    done = len(error.completed)
    assert isinstance(error, ServerUnavailableError) and isinstance(error, QNNError)
    assert error.status_code is None and 2 <= done < len(X)
    assert f"the server at {url} did not answer" in str(error)
    assert f"{done} of {len(X)} rows were computed" in str(error)
    np.testing.assert_array_equal(client.predict(error.completed), model.predict(X[:done]))
    # No server at all: nothing more computed, nothing lost.
    with pytest.raises(ServerUnavailableError, match=f"ConnectError.*; {done} of 6 rows") as again:
        client.predict_remote(url, X, completed=error.completed)
    assert again.value.completed == error.completed
    with pytest.raises(ValueError, match="completed holds 3 results for 2 ciphertexts"):
        client.run_remote(url, client.encrypt(X[:2]), completed=error.completed[:1] * 3)

    with serve_in_subprocess(directory, "--keys-dir", str(keys_dir), log=second_log) as url:
        resumed = client.predict_remote(url, X, completed=error.completed)
    np.testing.assert_array_equal(resumed, model.predict(X))
    assert second_log.read_text().count("POST /run") == len(X) - done
