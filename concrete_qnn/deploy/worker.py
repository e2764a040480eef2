"""``FHEServer`` in child processes: a crash in native code ends a child, not the caller.

Concrete aborts the whole process when evaluation keys do not fit the circuit (see
``deploy.server``). The HTTP server therefore computes in ``ServerProcess`` children, each
holding the loaded circuit and its most recently used evaluation keys; a child that dies is
replaced and the caller gets ``WorkerCrashed`` with its exit code. A request the child
refuses raises ValueError in the caller, a fault of the disk under it OSError.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
from collections import OrderedDict
from pathlib import Path

# Evaluation keys kept deserialized per child (each can be GBs).
KEYS_CACHED = 2


class WorkerCrashed(Exception):
    """The child process died during a call; ``exitcode`` is negative for a signal."""

    def __init__(self, exitcode: int | None):
        super().__init__(f"the FHE worker process died (exit code {exitcode})")
        self.exitcode = exitcode

    @property
    def killed(self) -> bool:
        """Killed from outside (SIGKILL, e.g. out of memory)."""
        return self.exitcode == -signal.SIGKILL

    @property
    def aborted(self) -> bool:
        """Ended by a signal of its own (abort, segmentation fault): native code failed."""
        return self.exitcode is not None and self.exitcode < 0 and not self.killed


class ServerProcess:
    """One child process running an ``FHEServer`` on the server artifact ``directory``.

    Parameters
    ----------
    directory : Path
        The server artifact.
    keys_dir : Path
        Where evaluation keys are filed as ``<key id>.bin``.

    Raises
    ------
    ValueError
        If the child cannot load the artifact.
    WorkerCrashed
        If the child dies while loading it.
    """

    def __init__(self, directory, keys_dir):
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, str(directory), str(keys_dir)), daemon=True
        )
        self._process.start()
        child.close()
        try:
            self._receive()  # "ready", or the loading error
        except (ValueError, WorkerCrashed):
            self.close()
            raise

    def check_keys(self, path) -> None:
        """Raise ValueError unless the file at ``path`` deserializes as evaluation keys."""
        self._call("check", str(path))

    def run(self, key_id: str, ciphertext: bytes) -> bytes:
        """The result ciphertext of one row, with the keys filed under ``key_id``."""
        return self._call("run", key_id, ciphertext)

    def close(self) -> None:
        """Stop the child (it removes its unpacked circuit)."""
        if self._process.is_alive():
            try:
                self._connection.send(("stop",))
            except OSError:
                pass
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join()
        self._connection.close()

    def _call(self, *message):
        try:
            self._connection.send(message)
        except OSError:
            pass  # the child is gone: _receive reports how it ended
        return self._receive()

    def _receive(self):
        try:
            status, payload = self._connection.recv()
        except (EOFError, OSError):
            self._process.join()
            raise WorkerCrashed(self._process.exitcode) from None
        if status == "error":
            raise ValueError(payload)
        if status == "oserror":
            raise OSError(*payload)  # errno, message: FileNotFoundError for ENOENT, ...
        return payload


class WorkerPool:
    """``size`` ``ServerProcess`` children shared by threads; a dead one is replaced.

    ``call`` blocks until a child is free; run it in a thread from async code.
    """

    def __init__(self, directory, keys_dir, size: int = 1):
        self._arguments = (directory, keys_dir)
        self._idle: queue.Queue[ServerProcess] = queue.Queue()
        for _ in range(size):
            self._idle.put(ServerProcess(*self._arguments))

    def call(self, method: str, *arguments):
        """``getattr(child, method)(*arguments)`` on a free child.

        Raises
        ------
        ValueError
            The child refused the request (its message).
        OSError
            The child could not read a file (the keys, an upload).
        WorkerCrashed
            The child died; a new one has taken its place.
        """
        worker = self._idle.get()
        try:
            return getattr(worker, method)(*arguments)
        except WorkerCrashed:
            worker.close()
            worker = ServerProcess(*self._arguments)
            raise
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """Stop every child (waits for running calls to finish)."""
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _serve(connection, directory: str, keys_dir: str) -> None:
    """The child's loop: load the artifact once, then answer calls until "stop"."""
    from concrete_qnn.deploy.server import FHEServer

    try:
        server = FHEServer(directory)
    except ValueError as error:
        connection.send(("error", str(error)))
        return
    connection.send(("ok", "ready"))
    keys: OrderedDict[str, object] = OrderedDict()
    try:
        while True:
            operation, *arguments = connection.recv()
            if operation == "stop":
                return
            try:
                if operation == "check":
                    server.load_evaluation_keys(Path(arguments[0]).read_bytes())
                    connection.send(("ok", None))
                    continue
                key_id, ciphertext = arguments
                if key_id not in keys:
                    path = Path(keys_dir) / f"{key_id}.bin"
                    keys[key_id] = server.load_evaluation_keys(path.read_bytes())
                    if len(keys) > KEYS_CACHED:
                        keys.popitem(last=False)
                keys.move_to_end(key_id)
                connection.send(("ok", server.run(ciphertext, keys[key_id])))
            except ValueError as error:
                connection.send(("error", str(error)))
            except OSError as error:
                connection.send(("oserror", (error.errno, error.strerror or str(error))))
    finally:
        server.close()
