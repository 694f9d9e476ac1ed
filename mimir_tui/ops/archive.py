"""Backup archives on disk: names, the streaming tar writer and reader, sidecars, rotation.

An archive is a tar stream (gzipped if ``persistence.backup_compress``, encrypted if asked:
:mod:`.crypto`) named by its UTC time, ``mimir-20261130T140501Z.tar[.gz][.enc]``. Its members
are regular files only, under ``database/``, ``vectors/``, ``config/`` and ``pipelines/``, and
``manifest.json`` last, with the SHA-256 and size of every other member (hashed as they are
written, so an archive is written in one pass). Next to it, ``<archive>.json`` (the sidecar)
repeats what ``backup list`` shows: time, size, counts and the last verification.

Reading refuses, before writing a byte of it anywhere: absolute names, ``..``, links, devices,
a member twice, a member the manifest does not list (or one it lists that is missing), and a
wrong checksum.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..errors import BadInput
from .crypto import ArchiveDamaged, DecryptingReader, EncryptingWriter, is_encrypted, key_material

MANIFEST = "manifest.json"
SIDECAR = ".json"
ROOTS = ("database", "vectors", "config", "pipelines")
NAME = re.compile(r"^mimir-(\d{8}T\d{6}Z)(?:-(\d+))?\.tar(\.gz)?(\.enc)?$")
COPY_BUFFER = 1 << 20
MAX_MANIFEST_BYTES = 16 << 20

Progress = Callable[[str, float | None], None]


def no_progress(phase: str, fraction: float | None) -> None:
    pass


# -- folders and names ------------------------------------------------------------------------


def private_dir(path: Path) -> Path:
    """Create ``path`` (0700) or tighten it to 0700 if it is ours and looser."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"backup_path {path}: cannot create it ({exc.strerror or exc})") from None
    if not path.is_dir():
        raise BadInput(f"backup_path {path} is not a directory")
    with contextlib.suppress(OSError):
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o700)
    return path


def archive_time(name: str) -> datetime | None:
    match = NAME.match(name)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def archives(folder: Path) -> list[Path]:
    """Mimir's archives in ``folder`` (by their names; other files are not ours), newest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if NAME.match(p.name) and p.is_file() and not p.is_symlink()]
    return sorted(found, key=lambda p: (archive_time(p.name), _sequence(p.name)), reverse=True)


def _sequence(name: str) -> int:
    match = NAME.match(name)
    return int(match.group(2) or 0) if match else 0


def sidecar_path(archive: Path) -> Path:
    return archive.with_name(archive.name + SIDECAR)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600) through a temporary name: never half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_sidecar(archive: Path) -> dict[str, Any]:
    try:
        data = json.loads(sidecar_path(archive).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def record_verification(archive: Path, manifest: dict[str, Any] | None, ok: bool | None, reason: str | None) -> None:
    """Keep the verification's result (and what ``backup list`` shows) next to the archive."""
    side = read_sidecar(archive)
    if manifest is not None:
        side.update(
            created=manifest.get("created"),
            backend=manifest.get("backend"),
            database_format=manifest.get("database_format"),
            schema_revision=manifest.get("schema_revision"),
            mimir_version=manifest.get("mimir_version"),
            row_counts=manifest.get("row_counts", {}),
        )
    side["archive"] = archive.name
    side["encrypted"] = archive.name.endswith(".enc")
    side["verified"] = None if ok is None else {"ok": ok, "at": datetime.now(UTC).isoformat(), "reason": reason}
    write_private(sidecar_path(archive), json.dumps(side, indent=2).encode())


# -- writing ----------------------------------------------------------------------------------


def _sha256_of(path: Path, size: int, out: list[Any]) -> None:
    """SHA-256 of the first ``size`` bytes of ``path`` into ``out`` (run in a thread: hashlib
    lets go of the GIL, so it overlaps the copy into the archive)."""
    try:
        sha = hashlib.sha256()
        left = size
        with open(path, "rb") as f:
            while left > 0:
                chunk = f.read(min(COPY_BUFFER * 4, left))
                if not chunk:
                    break
                sha.update(chunk)
                left -= len(chunk)
        out.append(sha.hexdigest() if left == 0 else OSError(f"{path} shrank while it was archived"))
    except OSError as exc:
        out.append(exc)


class ArchiveWriter:
    """``with ArchiveWriter(folder, when, compress, secret) as w: w.add_file(...); w.finish(manifest)``
    writes ``.mimir-<stamp>.<pid>.<random>.partial`` (0600) and, at ``finish``, links it to its final
    name (never over an existing archive) and removes the partial name. Leaving the block
    without ``finish`` removes the partial file.

    The tar framing is written here (headers from :class:`tarfile.TarInfo`, PAX format), so a
    plain archive's member data is copied by the kernel (``copy_file_range``) while a thread
    hashes the same file from the page cache; gzip and encryption get the data in 4 MiB
    writes."""

    def __init__(self, folder: Path, when: datetime, *, compress: bool, secret: bytes | None) -> None:
        self.folder = folder
        self.suffix = ".tar" + (".gz" if compress else "") + (".enc" if secret else "")
        self.base = f"mimir-{stamp(when)}"
        self.partial = folder / f".{self.base}.{os.getpid()}.{os.urandom(4).hex()}.partial"
        self.members: dict[str, dict[str, Any]] = {}
        self.path: Path | None = None
        fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self._file = os.fdopen(fd, "wb", buffering=COPY_BUFFER)
        self._crypt = EncryptingWriter(self._file, secret) if secret else None
        self._gzip = gzip.GzipFile(fileobj=self._crypt or self._file, mode="wb", compresslevel=6) if compress else None
        self._sink: Any = self._gzip or self._crypt or self._file
        self._plain = self._sink is self._file
        self._written = 0  # bytes of tar stream so far
        self._mtime = int(when.timestamp())

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.path is None:
            with contextlib.suppress(Exception):
                self._file.close()
            with contextlib.suppress(OSError):
                os.unlink(self.partial)

    def _write(self, data: bytes) -> None:
        self._sink.write(data)
        self._written += len(data)

    def _header(self, name: str, size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime, info.type = size, 0o600, self._mtime, tarfile.REGTYPE
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _pad(self) -> None:
        if self._written % tarfile.BLOCKSIZE:
            self._write(bytes(tarfile.BLOCKSIZE - self._written % tarfile.BLOCKSIZE))

    def add_file(self, name: str, source: Path, on_bytes: Callable[[int], None] = lambda n: None) -> None:
        check_member_name(name)
        with open(source, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            digest: list[Any] = []
            hasher = threading.Thread(target=_sha256_of, args=(source, size, digest), name="backup-hash")
            hasher.start()
            try:
                self._header(name, size)
                left = size
                if self._plain and hasattr(os, "copy_file_range"):
                    self._file.flush()
                    while left > 0:
                        n = os.copy_file_range(f.fileno(), self._file.fileno(), min(left, 64 * COPY_BUFFER))
                        if n == 0:
                            break
                        left -= n
                        self._written += n
                        on_bytes(n)
                else:
                    while left > 0:
                        chunk = f.read(min(left, 4 * COPY_BUFFER))
                        if not chunk:
                            break
                        self._write(chunk)
                        left -= len(chunk)
                        on_bytes(len(chunk))
            finally:
                hasher.join()
        if left:
            raise OSError(f"{source} shrank while it was archived")
        self._pad()
        if isinstance(digest[0], Exception):
            raise digest[0]
        self.members[name] = {"sha256": digest[0], "size": size}

    def add_tree(self, root: str, folder: Path, skip: Callable[[Path], bool] = lambda p: False) -> None:
        """Every regular file under ``folder`` as ``root/<relative path>`` (links are not followed)."""
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not path.is_file() or skip(path):
                continue
            self.add_file(f"{root}/{path.relative_to(folder).as_posix()}", path)

    def finish(self, manifest: dict[str, Any]) -> Path:
        manifest["members"] = dict(sorted(self.members.items()))
        data = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self._header(MANIFEST, len(data))
        self._write(data)
        self._pad()
        self._write(bytes(2 * tarfile.BLOCKSIZE))  # the end-of-archive blocks
        if self._written % tarfile.RECORDSIZE:
            self._write(bytes(tarfile.RECORDSIZE - self._written % tarfile.RECORDSIZE))
        if self._gzip is not None:
            self._gzip.close()
        if self._crypt is not None:
            self._crypt.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        for n in range(1000):
            final = self.folder / (self.base + (f"-{n}" if n else "") + self.suffix)
            try:
                os.link(self.partial, final)  # fails if the name exists: never over an archive
            except FileExistsError:
                continue
            break
        else:  # pragma: no cover - a thousand archives in one second
            raise OSError(f"no free archive name for {self.base} in {self.folder}")
        os.unlink(self.partial)
        _fsync_dir(self.folder)
        self.path = final
        return final


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- reading ----------------------------------------------------------------------------------


def check_member_name(name: str) -> str:
    """The member's name if it is a plain relative path under one of :data:`ROOTS` (or the
    manifest); :class:`ArchiveDamaged` otherwise."""
    if name == MANIFEST:
        return name
    path = PurePosixPath(name)
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(part in ("..", ".", "") for part in name.split("/"))
        or path.parts[0] not in ROOTS
        or len(path.parts) < 2
    ):
        raise ArchiveDamaged(f"archive member {name!r}: unsafe or unexpected path, refused")
    return name


@dataclass
class Extracted:
    """An archive read in full into ``folder``: its manifest, checked against every member."""

    folder: Path
    manifest: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


@contextlib.contextmanager
def open_stream(archive: Path, settings: Any) -> Iterator[IO[bytes]]:
    """The archive's tar stream (decrypted if it is encrypted)."""
    with open(archive, "rb") as raw:
        if is_encrypted(archive):
            secret = key_material(settings, required=True)
            assert secret is not None
            yield DecryptingReader(raw, secret, archive.name)  # type: ignore[misc]
        else:
            yield raw


def extract(archive: Path, settings: Any, into: Path, progress: Progress = no_progress) -> Extracted:
    """Read the whole archive into the (new, empty, private) folder ``into``, checking every
    member's name, kind and checksum against the manifest. Raises :class:`ArchiveDamaged` with
    the reason; ``into`` then holds partial files the caller removes."""
    total = max(1, archive.stat().st_size)
    seen: dict[str, dict[str, Any]] = {}
    manifest: dict[str, Any] | None = None
    files: dict[str, Path] = {}
    raw_pos = 0
    try:
        with open_stream(archive, settings) as stream:
            counted = _Counting(stream)
            with tarfile.open(fileobj=counted, mode="r|*") as tar:  # type: ignore[call-overload]
                for member in tar:
                    name = check_member_name(member.name)
                    if not member.isreg():
                        kind = "a link" if member.issym() or member.islnk() else "not a regular file"
                        raise ArchiveDamaged(f"archive member {name!r} is {kind}: refused")
                    if name in seen or (name == MANIFEST and manifest is not None):
                        raise ArchiveDamaged(f"archive member {name!r} appears twice: refused")
                    if manifest is not None:
                        raise ArchiveDamaged(f"archive member {name!r} follows the manifest: refused")
                    source = tar.extractfile(member)
                    assert source is not None
                    if name == MANIFEST:
                        if member.size > MAX_MANIFEST_BYTES:
                            raise ArchiveDamaged("manifest.json is implausibly large: refused")
                        try:
                            manifest = json.loads(source.read())
                        except ValueError:
                            raise ArchiveDamaged("manifest.json is not valid JSON") from None
                        continue
                    target = into.joinpath(*PurePosixPath(name).parts)
                    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    sha = hashlib.sha256()
                    size = 0
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as out:
                        while chunk := source.read(COPY_BUFFER):
                            sha.update(chunk)
                            size += len(chunk)
                            out.write(chunk)
                            if counted.pos - raw_pos > 16 * COPY_BUFFER:
                                raw_pos = counted.pos
                                progress("reading", min(1.0, counted.pos / total))
                    seen[name] = {"sha256": sha.hexdigest(), "size": size}
                    files[name] = target
    except ArchiveDamaged:
        raise
    except (tarfile.ReadError, EOFError, OSError, ValueError) as exc:
        text = str(exc) or type(exc).__name__
        if "unexpected end" in text.lower() or isinstance(exc, EOFError):
            text = "truncated (the tar stream ends early)"
        raise ArchiveDamaged(f"{archive.name}: unreadable: {text}") from None
    if manifest is None or not isinstance(manifest, dict):
        raise ArchiveDamaged(f"{archive.name}: no manifest.json (truncated, or not a Mimir archive)")
    listed = manifest.get("members")
    if not isinstance(listed, dict):
        raise ArchiveDamaged(f"{archive.name}: manifest.json lists no members")
    for name, facts in listed.items():
        got = seen.get(name)
        if got is None:
            raise ArchiveDamaged(f"{archive.name}: member {name!r} listed in the manifest is missing")
        if not isinstance(facts, dict) or got["sha256"] != facts.get("sha256") or got["size"] != facts.get("size"):
            raise ArchiveDamaged(f"{archive.name}: member {name!r} fails its SHA-256 check (changed or damaged)")
    extra = sorted(set(seen) - set(listed))
    if extra:
        raise ArchiveDamaged(f"{archive.name}: member {extra[0]!r} is not in the manifest: refused")
    progress("reading", 1.0)
    return Extracted(into, manifest, files)


class _Counting:
    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.pos = f, 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.pos += len(data)
        return data


def remove_tree(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def work_dir(parent: Path, kind: str) -> Path:
    """A new private folder ``.mimir-<kind>-<pid>-<random>`` in ``parent`` (staging, verify)."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f".mimir-{kind}-{os.getpid()}-", dir=parent))


_LEFTOVER = re.compile(r"^\.mimir-(?:(?:staging|verify)-(\d+)-.+|\d{8}T\d{6}Z\.(\d+)\.[0-9a-f]+\.partial)$")


def remove_leftovers(folder: Path) -> list[str]:
    """Remove what a create, verify or restore killed midway left in ``folder`` (a partial
    archive, a staging or verify folder) whose process is gone; returns their names."""
    removed: list[str] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        if not match:
            continue
        pid = int(match.group(1) or match.group(2))
        try:
            os.kill(pid, 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        if entry.is_dir() and not entry.is_symlink():
            remove_tree(entry)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry.name)
    return removed


# -- rotation ---------------------------------------------------------------------------------


def to_keep(times: list[datetime], keep_last: int, keep_daily: int, keep_weekly: int) -> set[int]:
    """Indexes (into ``times``) of the archives a rotation keeps: the ``keep_last`` newest, the
    newest of each of the ``keep_daily`` most recent UTC days that have one, and of each of the
    ``keep_weekly`` most recent ISO weeks (restic's ``forget --keep-last/-daily/-weekly``).
    All three 0: every archive."""
    if not (keep_last or keep_daily or keep_weekly):
        return set(range(len(times)))
    order = sorted(range(len(times)), key=lambda i: times[i], reverse=True)
    keep = set(order[:keep_last])

    def by(period: Callable[[datetime], Any], count: int) -> None:
        seen: list[Any] = []
        for i in order:
            key = period(times[i])
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            keep.add(i)

    by(lambda t: t.astimezone(UTC).date(), keep_daily)
    by(lambda t: t.astimezone(UTC).isocalendar()[:2], keep_weekly)
    return keep


def rotate(folder: Path, keep_last: int, keep_daily: int, keep_weekly: int) -> list[Path]:
    """Delete the archives (and their sidecars) the policy does not keep; returns them."""
    found = archives(folder)
    times = [archive_time(p.name) or datetime.min.replace(tzinfo=UTC) for p in found]
    keep = to_keep(times, keep_last, keep_daily, keep_weekly)
    removed = []
    for i, path in enumerate(found):
        if i in keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            sidecar_path(path).unlink()
        removed.append(path)
    return removed


def listing(folder: Path) -> list[dict[str, Any]]:
    """What ``backup list`` shows, newest first: from each archive's name, size and sidecar."""
    rows = []
    for path in archives(folder):
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # rotated out meanwhile
            continue
        side = read_sidecar(path)
        verified = side.get("verified") or {}
        rows.append(
            {
                "archive": path.name,
                "path": str(path),
                "created": archive_time(path.name),
                "size_bytes": size,
                "encrypted": path.name.endswith(".enc"),
                "backend": side.get("backend"),
                "row_counts": side.get("row_counts") or {},
                "verified": verified.get("ok"),
                "verified_at": verified.get("at"),
                "verify_error": verified.get("reason"),
            }
        )
    return rows


def last_backup(folder: Path) -> dict[str, Any]:
    """The newest archive in ``folder`` (name, time, verification), or only the folder if none:
    a directory listing and one small file, cheap enough for every health read."""
    try:
        found = archives(folder)
    except OSError:
        found = []
    if not found:
        return {"folder": str(folder), "archive": None}
    side = read_sidecar(found[0])
    verified = side.get("verified") or {}
    return {
        "folder": str(folder),
        "archive": found[0].name,
        "created": archive_time(found[0].name),
        "verified": verified.get("ok"),
    }


__all__ = [
    "ArchiveWriter",
    "archives",
    "extract",
    "listing",
    "rotate",
    "to_keep",
]
