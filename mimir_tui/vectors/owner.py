"""One process at a time on an embedded store.

chromadb's ``PersistentClient`` keeps the store's index in the memory of the process that opened
it: two processes that both write to one folder lose each other's writes or damage the index.
So a process opens an embedded store only while it holds an exclusive ``flock`` on
``<vector_db_path>/mimir-owner.lock`` (the threads of one process share it), and lets go when
its last user closes the store; another process waits for it, up to ``vectors.timeout``
seconds, then gets one line naming the holder. Several processes share a store through a server
(``vectors.server_url``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

from . import VectorStoreUnavailable

LOCK_NAME = "mimir-owner.lock"

_held: dict[Path, tuple[int, int]] = {}  # store folder -> (descriptor, users in this process)
_guard = threading.Lock()


def acquire(folder: Path, wait: float) -> None:
    """Hold the store at ``folder`` for this process (once more if it holds it already)."""
    with _guard:
        if folder in _held:
            fd, users = _held[folder]
            _held[folder] = (fd, users + 1)
            return
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _holder(fd)
                    os.close(fd)
                    raise VectorStoreUnavailable(
                        f"vector store {folder}: in use by another process{holder} for {wait:g} s; an embedded "
                        "store serves one process at a time: share it through a server (vectors.server_url)"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[folder] = (fd, 1)


def release(folder: Path) -> None:
    """One user of this process is done with the store; the last one lets go of it."""
    with _guard:
        if folder not in _held:
            return
        fd, users = _held[folder]
        if users > 1:
            _held[folder] = (fd, users - 1)
            return
        del _held[folder]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the flock


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
