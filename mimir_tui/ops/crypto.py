"""Encrypted archives: a passphrase (or a key file) through scrypt, then AES-256-GCM in chunks.

The chunks follow the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár): each chunk's
nonce is a random prefix, the chunk's counter and a flag saying whether it is the last one, so a
chunk moved, dropped, repeated or cut off, a stream truncated at a chunk boundary and one flipped
byte all fail authentication. The header (format, scrypt parameters, salt, nonce prefix, chunk
size) is the associated data of every chunk: changing it fails too. Both sides stream: memory
holds one chunk, never the archive.

Layout::

    magic "MIMIRENC" | version 1 | log2(N) | r | p | salt (16) | nonce prefix (7) | chunk size (4)
    chunk 0 ... chunk n   (chunk size bytes of plaintext + a 16-byte tag each; the last one
                           shorter, possibly empty, and marked last in its nonce)
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import IO, Any

from ..errors import BadInput, MimirError

MAGIC = b"MIMIRENC"
VERSION = 1
#: scrypt: N = 2**17, r = 8, p = 1 (128 MiB, a few tenths of a second): OWASP's recommendation.
LOG2_N, R, P = 17, 8, 1
MAX_LOG2_N = 20  # refuse headers asking for more (1 GiB of memory) than a sane writer uses
CHUNK = 1 << 20
TAG = 16
_HEADER = struct.Struct(">8sBBBB16s7sI")
HEADER_SIZE = _HEADER.size


class ArchiveDamaged(MimirError):
    """The archive cannot be trusted: a wrong key, a changed or missing byte, a bad member."""


def is_encrypted(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def key_material(settings: Any, *, required: bool) -> bytes | None:
    """The secret of the configured source: the key file (``persistence.backup_key_file``)
    if set, else the environment variable named by ``persistence.backup_passphrase_env``.
    ``required``: no secret at all is a :class:`BadInput` naming where it was looked for."""
    persistence = getattr(settings, "persistence", settings)
    if persistence.backup_key_file:
        path = Path(persistence.backup_key_file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BadInput(f"persistence.backup_key_file {path}: cannot read it ({exc.strerror or exc})") from None
        data = data.strip()
        if not data:
            raise BadInput(f"persistence.backup_key_file {path} is empty")
        return data
    name = persistence.backup_passphrase_env
    value = os.environ.get(name, "")
    if value:
        return value.encode()
    if required:
        raise BadInput(
            f"no backup passphrase: set the environment variable {name} "
            "(persistence.backup_passphrase_env) or persistence.backup_key_file"
        )
    return None


def _derive(secret: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(secret)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


class EncryptingWriter:
    """A write-only file object: plaintext in, the encrypted stream out to ``out``."""

    def __init__(self, out: IO[bytes], secret: bytes, chunk: int = CHUNK) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        salt, prefix = os.urandom(16), os.urandom(7)
        self._header = _HEADER.pack(MAGIC, VERSION, LOG2_N, R, P, salt, prefix, chunk)
        self._aead = AESGCM(_derive(secret, salt, LOG2_N, R, P))
        self._out, self._prefix, self._chunk = out, prefix, chunk
        self._buf = bytearray()
        self._counter = 0
        self._closed = False
        out.write(self._header)

    def write(self, data: bytes) -> int:
        self._buf += data
        while len(self._buf) > self._chunk:  # never the last chunk: more may follow
            self._emit(bytes(self._buf[: self._chunk]), last=False)
            del self._buf[: self._chunk]
        return len(data)

    def _emit(self, plain: bytes, *, last: bool) -> None:
        if self._counter >= 0xFFFFFFFF:
            raise MimirError("backup archive too large for one encrypted stream")
        nonce = _nonce(self._prefix, self._counter, last)
        self._out.write(self._aead.encrypt(nonce, plain, self._header))
        self._counter += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._emit(bytes(self._buf), last=True)
            self._buf.clear()

    def flush(self) -> None:
        pass


class DecryptingReader:
    """A read-only file object over an encrypted stream; raises :class:`ArchiveDamaged` at the
    first chunk that fails (wrong key, changed byte, reordered, cut off or extended)."""

    def __init__(self, src: IO[bytes], secret: bytes, name: str = "archive") -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._name = name
        header = src.read(HEADER_SIZE)
        if len(header) < HEADER_SIZE or header[: len(MAGIC)] != MAGIC:
            raise ArchiveDamaged(f"{name}: not a Mimir encrypted archive (or cut off in its header)")
        magic, version, log2_n, r, p, salt, prefix, chunk = _HEADER.unpack(header)
        if version != VERSION:
            raise ArchiveDamaged(f"{name}: encrypted with format version {version}; this Mimir reads {VERSION}")
        if not (10 <= log2_n <= MAX_LOG2_N and 1 <= r <= 32 and 1 <= p <= 16 and 1024 <= chunk <= 64 << 20):
            raise ArchiveDamaged(f"{name}: encryption header has implausible parameters (damaged)")
        self._aead = AESGCM(_derive(secret, salt, log2_n, r, p))
        self._src, self._header, self._prefix, self._chunk = src, header, prefix, chunk
        self._counter = 0
        self._pending = src.read(chunk + TAG)  # the next sealed chunk
        self._plain = b""
        self._pos = 0
        self._done = False

    def _next(self) -> None:
        from cryptography.exceptions import InvalidTag

        sealed = self._pending
        if len(sealed) < TAG:
            raise ArchiveDamaged(f"{self._name}: truncated (the encrypted stream ends before its last chunk)")
        following = self._src.read(self._chunk + TAG) if len(sealed) == self._chunk + TAG else b""
        last = not following
        try:
            self._plain = self._aead.decrypt(_nonce(self._prefix, self._counter, last), sealed, self._header)
        except InvalidTag:
            if self._counter == 0:
                reason = "wrong passphrase or key, or the archive was changed"
            elif last:
                reason = "truncated or changed (its last chunk fails authentication)"
            else:
                reason = f"changed (chunk {self._counter} fails authentication)"
            raise ArchiveDamaged(f"{self._name}: {reason}") from None
        self._pos = 0
        self._counter += 1
        self._pending = following
        self._done = last

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while size < 0 or len(out) < size:
            if self._pos >= len(self._plain):
                if self._done:
                    break
                self._next()
                continue
            take = len(self._plain) - self._pos if size < 0 else min(size - len(out), len(self._plain) - self._pos)
            out += self._plain[self._pos : self._pos + take]
            self._pos += take
        return bytes(out)

    def readable(self) -> bool:
        return True
