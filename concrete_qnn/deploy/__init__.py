"""Encrypted inference deployed: artifacts, client, server, HTTP server, batch scoring.

``model.save_fhe(DIRECTORY)`` writes ``DIRECTORY/client`` (for data owners) and
``DIRECTORY/server`` (for the server); ``deploy.save_fhe(pipeline, DIRECTORY)`` (and
``deploy.compile``) does so for a fitted ``Pipeline`` of scalers ending in the model, whose
scalers the client then applies (``deploy.preprocessing``); ``FHEClient`` makes keys,
encrypts and decrypts; ``FHEServer`` computes on ciphertexts with evaluation keys only;
``concrete-qnn serve DIRECTORY`` puts it behind HTTP (``deploy.http_server``);
``run_on_dask`` scores many ciphertexts on a Dask cluster (``deploy.batch``, needs the
``dask`` extra).
"""

from concrete_qnn.deploy.client import FHEClient, ServerError, ServerUnavailableError
from concrete_qnn.deploy.preprocessing import compile, save_fhe
from concrete_qnn.deploy.server import FHEServer

__all__ = [
    "FHEClient",
    "FHEServer",
    "ServerError",
    "ServerUnavailableError",
    "compile",
    "save_fhe",
]
