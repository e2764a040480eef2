"""Deployment: artifacts, client, server, the HTTP server in a subprocess, Dask batch scoring,
on the tiny model of ``conftest.py``."""

import io
import json
import re
import zipfile
from pathlib import Path

import distributed
import httpx
import numpy as np
import pandas as pd
import pytest
from concrete import fhe
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.exceptions import NotFittedError

from concrete_qnn import QNNClassifier, QNNRegressor
from concrete_qnn.deploy import FHEClient, FHEServer, ServerError
from concrete_qnn.deploy import evaluation_keys as key_format
from concrete_qnn.deploy.artifacts import CLIENT_FILES, ClientArtifact, save_fhe
from concrete_qnn.deploy.batch import run_on_dask
from concrete_qnn.deploy.http_server import _zip, serve_in_subprocess
from concrete_qnn.exceptions import ModelFileError, NotCompiledError
from concrete_qnn.integer.formats import content_sha256

ROWS = [0, 60, 120]


@pytest.fixture(scope="module")
def other_keys(iris, tiny, tmp_path_factory):
    """Evaluation keys of another model: 4-bit accumulators give other crypto parameters."""
    X, y = iris
    directory = tiny(X, y, n_accum_bits=4).save_fhe(tmp_path_factory.mktemp("other") / "m")
    client = FHEClient(directory / "client")
    client.keygen(seed=2)
    return client


@pytest.fixture(scope="module")
def encrypted(iris, deployed):
    """Three encrypted rows and their results computed in this process."""
    X, _ = iris
    _, directory, client = deployed
    ciphertexts = client.encrypt(X[ROWS])
    with FHEServer(directory / "server") as server:
        keys = server.load_evaluation_keys(client.evaluation_keys())
        results = [server.run(ciphertext, keys) for ciphertext in ciphertexts]
    return ciphertexts, results


# ---------------------------------------------------------------------- in process
@pytest.mark.slow  # the first to compile and keygen (deployed)
def test_client_and_server_give_exactly_the_clear_predictions(iris, deployed, encrypted):
    X, _ = iris
    model, _, client = deployed
    ciphertexts, results = encrypted
    assert len(set(model.predict(X[ROWS]))) > 1  # the rows do not all get one label
    np.testing.assert_array_equal(client.predict(results), model.predict(X[ROWS]))
    assert client.predict(results).dtype == model.predict(X[ROWS]).dtype
    np.testing.assert_array_equal(client.predict_proba(results), model.predict_proba(X[ROWS]))
    accumulators = model.integer_model_.run(X[ROWS].astype(np.float32))
    np.testing.assert_array_equal(
        client.decrypt(results), model.integer_model_.dequantize_output(accumulators)
    )
    assert len(ciphertexts) == 3 and all(isinstance(c, bytes) for c in ciphertexts)


def test_artifacts_are_json_and_concrete_formats_only(deployed):
    _, directory, client = deployed
    files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    assert files == [
        "client/client.json",
        "client/client.specs.json",
        "server/server.json",
        "server/server.zip",
    ]
    metadata = json.loads((directory / "client" / "client.json").read_text())
    assert metadata["format_version"] == 4
    assert metadata["packages"]["concrete-python"] == fhe.__version__
    assert metadata["output"]["classes"] == [0, 1, 2]
    assert metadata["circuit"] == client.circuit
    with zipfile.ZipFile(directory / "server" / "server.zip") as archive:
        members = set(archive.namelist())
    assert "sharedlib.so" in members and "client.specs.json" in members
    assert not any("key" in name.lower() for name in members)


@pytest.fixture(scope="module")
def regressor_artifacts(iris, tmp_path_factory):
    """A regressor whose integer model standardizes features and targets, and its client
    artifact as read back (no keys needed: the clear ends only)."""
    X, y = iris
    model = QNNRegressor(
        random_state=0,
        max_epochs=3,
        module__n_hidden_neurons_multiplier=1,
        module__n_hidden_neurons_min=0,
    )
    model.fit(X, y.astype(float)).compile(X[:10])
    integer = model.integer_model_.with_standardization(
        np.linspace(-1, 1, 4), np.linspace(0.5, 2, 4), 5.0, 2.0, list("abcd")
    )
    directory = tmp_path_factory.mktemp("regressor") / "m"
    save_fhe(model.fhe_circuit_, integer.io, directory)
    return integer, ClientArtifact.load(directory / "client")


@settings(max_examples=50, deadline=None)
@given(
    X=arrays(np.float64, (3, 4), elements=st.floats(-1e6, 1e6)),
    accumulators=arrays(np.int64, (3, 1), elements=st.integers(-(2**20), 2**20)),
)
@pytest.mark.slow  # fits and compiles a regressor
def test_client_artifact_quantizes_and_predicts_as_the_integer_model(
    regressor_artifacts, X, accumulators
):
    integer, artifact = regressor_artifacts
    np.testing.assert_array_equal(artifact.io.quantize_input(X), integer.quantize_input(X))
    outputs = artifact.io.dequantize_output(accumulators)
    np.testing.assert_array_equal(outputs, integer.dequantize_output(accumulators))
    np.testing.assert_array_equal(artifact.io.predictions(outputs), integer.predictions(outputs))
    assert artifact.io.predictions(outputs).shape == (3,)  # fitted on 1-D y
    assert list(artifact.io.feature_names) == list("abcd")


@pytest.mark.slow  # keygen, twice
def test_seeded_keys_repeat_and_saved_keys_decrypt(deployed, encrypted, other_keys, tmp_path):
    _, directory, client = deployed
    _, results = encrypted
    again = FHEClient(directory / "client")
    again.keygen(seed=1)  # the same secret key; evaluation keys use fresh randomness
    assert again.evaluation_key_id() != client.evaluation_key_id()
    np.testing.assert_array_equal(again.decrypt(results), client.decrypt(results))
    client.save_keys(tmp_path / "keys.zip")
    assert (tmp_path / "keys.zip").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError, match="already exists; keys are never overwritten"):
        client.save_keys(tmp_path / "keys.zip")
    loaded = FHEClient(directory / "client")
    loaded.load_keys(tmp_path / "keys.zip")
    np.testing.assert_array_equal(loaded.predict(results), client.predict(results))
    other_keys.save_keys(tmp_path / "other.zip")
    with pytest.raises(ModelFileError, match="holds the keys of another model"):
        loaded.load_keys(tmp_path / "other.zip")
    with pytest.raises(ModelFileError, match="not a readable keys file"):
        loaded.load_keys(directory / "client" / "client.json")
    np.testing.assert_array_equal(loaded.predict(results), client.predict(results))


def test_client_refusals(iris, deployed, encrypted):
    X, _ = iris
    _, directory, client = deployed
    fresh = FHEClient(directory / "client")
    with pytest.raises(NotCompiledError, match=r"no keys: call keygen\(\) or load_keys"):
        fresh.encrypt(X[:1])
    for seed in (0, -1, 2**128, 1.5, True):
        with pytest.raises(ValueError, match=r"seed must be None or an integer in \[1, 2\*\*128\)"):
            fresh.keygen(seed=seed)
    with pytest.raises(ValueError, match="X has 3 features, but the model is expecting 4"):
        client.encrypt(X[:1, :3])
    with pytest.raises(ValueError, match="NaN"):
        client.encrypt(np.full((1, 4), np.nan))
    _, results = encrypted
    with pytest.raises(ValueError, match="ciphertext 0 is not a result of this model's circuit"):
        client.decrypt([results[0][:100]])
    with pytest.raises(TypeError, match=r"one bytes object per row, got a single bytes"):
        client.predict(results[0])
    assert len(client.encrypt(pd.DataFrame(X[:2], columns=list("abcd")))) == 2  # no names fitted


def test_damaged_or_mismatched_artifacts_are_refused(deployed, tmp_path):
    model, directory, _ = deployed
    copy = tmp_path / "copy"
    (copy / "client").mkdir(parents=True)
    (copy / "server").mkdir()
    for path in directory.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(directory)).write_bytes(path.read_bytes())
    with pytest.raises(
        ModelFileError, match=r"client.json is missing \(pass save_fhe's DIRECTORY/client"
    ):
        FHEClient(copy)
    with pytest.raises(ModelFileError, match="no such directory"):
        FHEClient(copy / "missing")
    client_json = copy / "client" / "client.json"
    metadata = json.loads(client_json.read_text())

    def rewrite(changed: dict) -> None:
        """``client.json`` with ``changed`` content and a checksum that matches it."""
        client_json.write_text(json.dumps({**changed, "sha256": content_sha256(changed)}))

    rewrite({**metadata, "feature_names": list("abcd")})
    with pytest.raises(ValueError, match=r"X has the columns \['a', 'b', 'd', 'c'\]"):
        FHEClient(copy / "client").encrypt(pd.DataFrame(np.zeros((1, 4)), columns=list("abdc")))
    cases = [
        (
            {**metadata, "format_version": 1},
            r"has format version 1; this concrete-qnn reads version 4 \(and 3\)",
        ),
        (
            {**metadata, "packages": {**metadata["packages"], "concrete-python": "2.0.0"}},
            "written with concrete-python 2.0.0, this environment has",
        ),
        ({**metadata, "circuit": "0" * 64}, "its SHA-256 does not match the fingerprint"),
        ({**metadata, "input": {**metadata["input"], "scale": -1.0}}, "input_scale must be"),
        ({**metadata, "output_offsets": [0, 1]}, "output_offsets must be 3 integers"),
        ({**metadata, "output_offsets": [0, 1, 2.5]}, "output_offsets must be 3 integers"),
    ]
    for changed, message in cases:
        rewrite(changed)
        with pytest.raises(ModelFileError, match=message):
            FHEClient(copy / "client")
    # An edit that keeps valid JSON but not the checksum: the input scale, a class label,
    # the fingerprint (which must not blame client.specs.json), a NaN.
    edits = [
        {**metadata, "input": {**metadata["input"], "scale": metadata["input"]["scale"] + 1}},
        {**metadata, "output": {**metadata["output"], "classes": [0, 1, 7]}},
        {**metadata, "circuit": "0" * 64},
    ]
    for edited in edits:
        client_json.write_text(json.dumps(edited))
        with pytest.raises(ModelFileError, match=r"client\.json is damaged or was edited"):
            FHEClient(copy / "client")
    client_json.write_text(json.dumps(metadata).replace('"sha256"', '"nan": NaN, "sha256"'))
    with pytest.raises(ModelFileError, match=r"client\.json is damaged or was edited"):
        FHEClient(copy / "client")
    client_json.write_text(json.dumps(metadata)[:-20])
    with pytest.raises(ModelFileError, match=r"client\.json is damaged"):
        FHEClient(copy / "client")
    server_zip = copy / "server" / "server.zip"
    damaged = bytearray(server_zip.read_bytes())
    damaged[len(damaged) // 2] ^= 1
    server_zip.write_bytes(bytes(damaged))
    with pytest.raises(ModelFileError, match=r"server\.zip is damaged: its SHA-256 does not match"):
        FHEServer(copy / "server")
    with pytest.raises(ValueError, match="already exists and is not an empty directory"):
        model.save_fhe(copy)
    with pytest.raises(NotFittedError):
        QNNClassifier().save_fhe(tmp_path / "new")
    model_copy = QNNClassifier(random_state=0, max_epochs=1).fit(np.eye(4), [0, 1, 0, 1])
    with pytest.raises(RuntimeError, match=r"not compiled for FHE: call compile\(X\)"):
        model_copy.save_fhe(tmp_path / "new")
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------- HTTP
@pytest.mark.slow  # a server in a subprocess
def test_http_server_round_trip_restart_and_refusals(iris, deployed, other_keys, tmp_path):
    X, _ = iris
    model, directory, client = deployed
    keys_dir, log = tmp_path / "keys", tmp_path / "server.log"
    options = ("--keys-dir", str(keys_dir), "--max-key-mb", "200", "--max-ciphertext-mb", "1")
    with serve_in_subprocess(directory, *options, log=log) as url:
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "ok" and health["circuit"] == client.circuit
        with zipfile.ZipFile(io.BytesIO(httpx.get(f"{url}/client").content)) as z:
            assert z.read("client.json") == (directory / "client" / "client.json").read_bytes()

        np.testing.assert_array_equal(client.predict_remote(url, X[ROWS]), model.predict(X[ROWS]))
        key_id = client.evaluation_key_id()
        assert sorted(p.name for p in keys_dir.iterdir()) == [f"{key_id}.bin"]
        assert Path(log).read_text().count("POST /keys") == 1

    # A restart keeps the keys: the same id works without a new upload.
    with serve_in_subprocess(directory, *options, log=log) as url:
        assert httpx.get(f"{url}/keys/{key_id}").json() == {
            "key_id": key_id,
            "bytes": len(client.evaluation_keys()),
        }
        row = X[ROWS[1:2]]
        (ciphertext,) = client.encrypt(row)
        results = client.run_remote(url, [ciphertext])
        np.testing.assert_array_equal(client.predict_proba(results), model.predict_proba(row))
        assert Path(log).read_text().count("POST /keys") == 1

        def refused(path, content, status, message):
            response = httpx.post(f"{url}{path}", content=content, timeout=60)
            assert response.status_code == status, response.text
            assert re.search(message, response.json()["error"]), response.json()

        def good_request_succeeds():
            good = httpx.post(f"{url}/run/{key_id}", content=ciphertext, timeout=60)
            assert good.status_code == 200
            np.testing.assert_array_equal(client.predict([good.content]), model.predict(row))

        refused(f"/run/{'0' * 64}", ciphertext, 404, "unknown evaluation key id")
        refused("/run/not-an-id", ciphertext, 404, "unknown evaluation key id 'not-an-id'")
        refused(f"/run/{key_id}", ciphertext[:-50], 422, "the ciphertext is damaged")
        refused(f"/run/{key_id}", b"\0" * (2 * 2**20), 413, "over the limit of 1048576 bytes")
        refused("/keys", b"not keys" * 100, 422, "these are not evaluation keys")
        good_request_succeeds()
        # Keys of another model are refused at upload, by their circuit's label.
        refused("/keys", other_keys.evaluation_keys(), 422, "made for another model")
        good_request_succeeds()
        # Unlabelled keys with the right label forged: concrete aborts, the worker dies.
        forged = key_format.wrap(client.circuit, _concrete_bytes(other_keys))
        forged_id = httpx.post(f"{url}/keys", content=forged).json()
        refused(f"/run/{forged_id['key_id']}", ciphertext, 422, "do not fit this model's")
        good_request_succeeds()
        with pytest.raises(ServerError, match="answered 422: the ciphertext is damaged"):
            client.run_remote(url, [ciphertext[:100]])
        with pytest.raises(ValueError, match="runs another model"):
            other_keys.run_remote(url, [])
        # Keys damaged on the server's disk are not "filed": the client uploads them again
        # (GET /keys used to answer 200 and every run a 422).
        filed = keys_dir / f"{key_id}.bin"
        filed.write_bytes(filed.read_bytes()[:1000])
        answer = httpx.get(f"{url}/keys/{key_id}")
        assert answer.status_code == 404 and "are damaged or of another model" in answer.text
        results = client.run_remote(url, [ciphertext])
        np.testing.assert_array_equal(client.predict_proba(results), model.predict_proba(row))
        assert filed.read_bytes() == client.evaluation_keys()
        assert httpx.get(f"{url}/keys/{key_id}").status_code == 200

    # Nothing the server holds decrypts: no file there is a secret key, and a client built
    # from the server's own specs with fresh keys cannot read its results.
    server_files = [*directory.rglob("*"), *keys_dir.rglob("*")]
    for path in (p for p in server_files if p.is_file()):
        with pytest.raises(RuntimeError):
            fhe.Keys.deserialize(path.read_bytes())
    with zipfile.ZipFile(directory / "server" / "server.zip") as archive:
        specs = fhe.ClientSpecs.deserialize(archive.read("client.specs.json"))
    outsider = fhe.Client(specs)
    outsider.keygen()
    guess = outsider.decrypt(fhe.Value.deserialize(results[0]))
    assert not np.array_equal(guess, model.integer_model_.run(row.astype(np.float32))[0])


def test_serve_refuses_a_directory_that_is_not_an_artifact(deployed, tmp_path, capsys):
    from concrete_qnn.cli import main

    _, directory, _ = deployed
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["serve", str(tmp_path)]) == 2
    assert "no such directory" in capsys.readouterr().err  # tmp_path/server
    (tmp_path / "server").mkdir()
    assert main(["serve", str(tmp_path)]) == 2
    assert "is not an FHE server artifact: server.json is missing" in capsys.readouterr().err
    for part in ("server", "client"):
        assert main(["serve", str(directory / part)]) == 2
        err = capsys.readouterr().err
        assert f"is the {part} part of an artifact: pass the directory save_fhe wrote " in err


def test_the_zip_served_at_get_client_is_a_client_artifact(deployed, tmp_path):
    _, directory, client = deployed
    archive = tmp_path / "client.zip"
    archive.write_bytes(_zip(directory / "client", CLIENT_FILES))
    from_zip = FHEClient(archive)
    assert from_zip.circuit == client.circuit
    np.testing.assert_array_equal(from_zip.io.output_scales, client.io.output_scales)
    np.testing.assert_array_equal(
        from_zip.io.quantize_input(np.eye(4)), client.io.quantize_input(np.eye(4))
    )
    (tmp_path / "not.zip").write_bytes(b"PK" + b"\0" * 100)
    with pytest.raises(ValueError, match="neither a client artifact directory nor a zip"):
        FHEClient(tmp_path / "not.zip")
    served = (tmp_path / "client.zip").read_bytes()
    for position in range(30, len(served), max(1, len(served) // 200)):
        damaged = bytearray(served)
        damaged[position] ^= 0xFF
        (tmp_path / "damaged.zip").write_bytes(bytes(damaged))
        try:
            FHEClient(tmp_path / "damaged.zip")
        except ValueError:
            pass  # refused with a message; anything else fails the test
    with zipfile.ZipFile(tmp_path / "partial.zip", "w") as partial:
        partial.writestr("client.json", (directory / "client" / "client.json").read_bytes())
    with pytest.raises(ValueError, match="is not an FHE client artifact"):
        FHEClient(tmp_path / "partial.zip")


def test_keys_of_another_model_are_refused_in_process(deployed, other_keys, encrypted):
    _, directory, client = deployed
    ciphertexts, results = encrypted
    with FHEServer(directory / "server") as server:
        with pytest.raises(ValueError, match="made for another model"):
            server.run(ciphertexts[0], other_keys.evaluation_keys())
        with pytest.raises(ValueError, match="no concrete-qnn key header"):
            server.run(ciphertexts[0], _concrete_bytes(client))
        answer = server.run(ciphertexts[0], client.evaluation_keys())
    np.testing.assert_array_equal(client.decrypt([answer]), client.decrypt(results[:1]))


def _concrete_bytes(client: FHEClient) -> bytes:
    """The client's evaluation keys as concrete serializes them, without our label."""
    return client.evaluation_keys()[len(key_format.MAGIC) + 64 :]


# ---------------------------------------------------------------------- Dask
@pytest.mark.slow  # a Dask cluster
def test_dask_batch_equals_in_process_and_loads_once_per_worker(deployed, encrypted):
    _, directory, client = deployed
    ciphertexts, results = encrypted
    batch = [*ciphertexts, ciphertexts[0]]
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as dask_client,
        distributed.get_task_stream(dask_client) as tasks,
    ):
        on_dask = run_on_dask(dask_client, directory / "server", batch, client.evaluation_keys())
        logs = dask_client.get_worker_logs()
    assert len(on_dask) == 4
    np.testing.assert_array_equal(client.decrypt(on_dask), client.decrypt([*results, results[0]]))
    workers = {task["worker"] for task in tasks.data if "_run_one" in str(task["key"])}
    assert len(workers) == 2
    for worker in workers:
        loads = [m for _, m in logs[worker] if "concrete-qnn: loaded" in m]
        assert len(loads) == 1, logs[worker]
