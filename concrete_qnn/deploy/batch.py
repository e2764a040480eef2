"""Batch scoring of many ciphertexts on a ``dask.distributed`` cluster (the ``dask`` extra).

Encrypted rows are independent, so scoring is a map over ciphertexts. Loading the circuit
and deserializing the evaluation keys (100 MB to GBs) costs far more than moving one
ciphertext, so each worker does it once: ``run_on_dask`` registers a worker plugin that
loads them in its ``setup`` (on every worker, including ones that join later), maps the
ciphertexts over the cluster, and unregisters the plugin, freeing the keys.

Every worker must reach ``directory`` (a shared or copied path) and have concrete-qnn and
concrete-python installed. Keys of another model abort a worker (see ``deploy.server``):
check them first, e.g. through ``concrete-qnn serve``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from concrete_qnn.deploy.server import FHEServer

logger = logging.getLogger("distributed.worker")


class _LoadedServer(WorkerPlugin):
    """Worker plugin: the server artifact and the evaluation keys, loaded once per worker."""

    idempotent = True

    def __init__(self, directory: str, evaluation_keys: bytes, key_id: str):
        self.directory = directory
        self.evaluation_keys = evaluation_keys
        self.key_id = key_id

    def setup(self, worker) -> None:
        self.server = FHEServer(self.directory)
        self.keys = self.server.load_evaluation_keys(self.evaluation_keys)
        del self.evaluation_keys
        logger.info("concrete-qnn: loaded %s and evaluation keys %s", self.directory, self.key_id)

    def teardown(self, worker) -> None:
        self.server.close()


def _run_one(ciphertext: bytes, plugin_name: str) -> bytes:
    plugin = get_worker().plugins[plugin_name]
    return plugin.server.run(ciphertext, plugin.keys)


def run_on_dask(client, directory, ciphertexts, evaluation_keys: bytes) -> list[bytes]:
    """Result ciphertexts of ``ciphertexts``, computed on the workers of ``client``.

    Parameters
    ----------
    client : distributed.Client
        Connected to the cluster.
    directory : str or Path
        The server artifact (``DIRECTORY/server`` of ``save_fhe``), at the same path on
        every worker.
    ciphertexts : sequence of bytes
        Rows encrypted by ``FHEClient.encrypt``.
    evaluation_keys : bytes
        ``FHEClient.evaluation_keys()``.

    Returns
    -------
    list of bytes
        One result ciphertext per input, in order, for ``FHEClient.decrypt``.

    Raises
    ------
    ValueError
        If the artifact cannot be loaded here (checked before anything is sent), or a
        worker refuses a ciphertext.
    """
    directory = str(Path(directory).resolve())
    FHEServer(directory).close()  # the artifact's checks, here, before the cluster works
    key_id = hashlib.sha256(evaluation_keys).hexdigest()
    name = f"concrete-qnn-{key_id[:16]}-{hashlib.sha256(directory.encode()).hexdigest()[:8]}"
    client.register_plugin(_LoadedServer(directory, evaluation_keys, key_id), name=name)
    try:
        futures = client.map(_run_one, list(ciphertexts), plugin_name=name, pure=False)
        return client.gather(futures)
    finally:
        client.unregister_worker_plugin(name)
