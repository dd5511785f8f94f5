"""Fetch a model over HTTP(S) and unpack its archive, leaving nothing half-done.

Standard library only (urllib, hashlib, tarfile, zipfile). Both functions work
in a temporary place inside the destination folder and move the result into
place with a rename, so an interrupted or refused run leaves neither partial
files nor a folder it created itself. Every failure a user can cause (a bad
URL, a dead server, a wrong hash, a hostile archive) is one-line
:class:`~trtedge.errors.ModelError`.
"""

import contextlib
import copy
import hashlib
import http.client
import os
import posixpath
import re
import shutil
import socket
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from typing import IO, Callable, Dict, List, Optional, Set, Tuple

from ..errors import ModelError
from .files import sha256_file

__all__ = ["fetch", "unpack", "ARCHIVE_SUFFIXES"]

#: the archive names :func:`unpack` reads
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")

_CHUNK = 1 << 16
_MB = 1e6


# --------------------------------------------------------------------------
# folders this module creates, and removes again on failure


def _missing_dirs(path: str) -> List[str]:
    """The folders on the way to ``path`` that do not exist yet, deepest first."""
    out = []
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        out.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return out


def _make_dirs(path: str) -> List[str]:
    created = _missing_dirs(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        _remove_dirs(created)
        raise ModelError("cannot create the folder {}: {}".format(path, exc.strerror or exc))
    return created


def _remove_dirs(created: List[str]) -> None:
    for folder in created:  # deepest first; only if still empty
        with contextlib.suppress(OSError):
            os.rmdir(folder)


# --------------------------------------------------------------------------
# fetch


class _Meter:
    """Progress lines: about every second or every 10 % of the file."""

    def __init__(self, report: Optional[Callable[[str], None]], name: str, total: Optional[int]) -> None:
        self.report = report
        self.name = name
        self.total = total
        self.start = self.last_time = time.monotonic()
        self.last_fraction = 0.0

    def _line(self, got: int, now: float) -> str:
        rate = got / _MB / max(now - self.start, 1e-6)
        if self.total:
            return "{}: {} of {} bytes ({:.0f}%, {:.1f} of {:.1f} MB), {:.1f} MB/s".format(
                self.name, got, self.total, 100.0 * got / self.total, got / _MB, self.total / _MB, rate)
        return "{}: {} bytes ({:.1f} MB), {:.1f} MB/s".format(self.name, got, got / _MB, rate)

    def update(self, got: int) -> None:
        if self.report is None:
            return
        now = time.monotonic()
        fraction = got / self.total if self.total else 0.0
        if now - self.last_time >= 1.0 or fraction - self.last_fraction >= 0.1:
            self.last_time, self.last_fraction = now, fraction
            self.report(self._line(got, now))

    def done(self, got: int) -> None:
        if self.report is not None:
            now = time.monotonic()
            self.report("{} done in {:.1f} s".format(self._line(got, now), now - self.start))


class _Broken(Exception):
    """A download that ended early (the cause, for the one-line error)."""


def _cause(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, socket.timeout) or "timed out" in str(exc):
        return "no answer within {:g} s (timed out)".format(timeout)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _expected_sha256(sha256: Optional[str]) -> Optional[str]:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not re.match(r"[0-9a-f]{64}$", value):
        raise ModelError("sha256 '{}' is not 64 hexadecimal digits".format(sha256))
    return value


def _stream(url: str, out: IO[bytes], timeout: float, meter_for: Callable[[Optional[int]], _Meter]) -> str:
    """Copy the body of ``url`` to ``out``; returns its sha256."""
    digest = hashlib.sha256()
    # a fresh opener: it reads the proxy settings of the environment now
    opener = urllib.request.build_opener()
    request = urllib.request.Request(url, headers={"User-Agent": "trtedge"})
    with contextlib.closing(opener.open(request, timeout=timeout)) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.strip().isdigit() else None
        meter = meter_for(total)
        got = 0
        while True:
            try:
                chunk = response.read(_CHUNK)
            except http.client.IncompleteRead as exc:  # chunked bodies; a short Content-Length body reads as b""
                raise _Broken("the connection closed after {} bytes, {} were announced".format(
                    got + len(exc.partial), total if total is not None else "more"))
            if not chunk:
                break
            out.write(chunk)
            digest.update(chunk)
            got += len(chunk)
            meter.update(got)
        if total is not None and got != total:
            raise _Broken("the connection closed after {} bytes, {} were announced".format(got, total))
        meter.done(got)
    return digest.hexdigest()


def fetch(url: str, dest_dir: str, sha256: Optional[str] = None, timeout: float = 30,
          progress: Optional[Callable[[str], None]] = None, filename: Optional[str] = None) -> str:
    """Download ``url`` into ``dest_dir`` (created if needed); returns the file's path.

    The file is named after the URL's last path part (or ``filename``). It
    is written to a temporary file inside ``dest_dir`` and renamed into place
    only when complete and, if ``sha256`` is given, when its hash matches;
    a file already there with that hash is kept and nothing is downloaded.
    ``timeout``: seconds to wait for the connection and for each read.
    ``progress``: called with one line about every second or 10 %.

    A failure (bad URL, connection refused, HTTP error, timeout, a body shorter
    than its Content-Length, a hash mismatch) raises :class:`ModelError` naming
    the URL and the cause, and leaves nothing behind: no temporary file, and no
    folder that this call created.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ModelError("cannot download '{}': only http:// and https:// URLs are supported".format(url))
    name = filename or posixpath.basename(urllib.parse.unquote(parts.path))
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ModelError("cannot download {}: the URL names no file; give a file name".format(url))
    expected = _expected_sha256(sha256)
    final = os.path.join(dest_dir, name)
    if expected is not None and os.path.isfile(final) and sha256_file(final) == expected:
        if progress is not None:
            progress("{}: already there, sha256 matches".format(final))
        return final

    created = _make_dirs(dest_dir)
    done = False
    tmp = None  # type: Optional[str]
    try:
        fd, tmp = tempfile.mkstemp(prefix=".{}.".format(name), suffix=".part", dir=dest_dir)
        with os.fdopen(fd, "wb") as out:
            try:
                got = _stream(url, out, timeout, lambda total: _Meter(progress, name, total))
            except urllib.error.HTTPError as exc:
                exc.close()
                raise ModelError("download of {} failed: HTTP {} {}".format(url, exc.code, exc.reason))
            except (_Broken, http.client.HTTPException, OSError, ValueError) as exc:
                raise ModelError("download of {} failed: {}".format(url, _cause(exc, timeout)))
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and got != expected:
            raise ModelError("download of {} has sha256 {} but {} was expected; the file was not kept "
                             "(check the URL and the sha256)".format(url, got, expected))
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
        done = True
    except OSError as exc:  # our own folder or file, not the network
        raise ModelError("cannot write the download of {} into {}: {}".format(url, dest_dir, exc.strerror or exc))
    finally:
        if not done:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            _remove_dirs(created)
    return final


# --------------------------------------------------------------------------
# unpack


class _Entry:
    """One archive member, as the safety checks see it."""

    __slots__ = ("name", "kind", "link", "member")

    def __init__(self, name: str, kind: str, link: str, member: object) -> None:
        self.name = name  # normalised, relative, "/"-separated
        self.kind = kind  # "file", "dir", "symlink" or "hardlink"
        self.link = link  # the link target as stored
        self.member = member


def _normalised(raw: str, archive: str) -> str:
    name = raw.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise ModelError("refusing to unpack {}: member '{}' has an absolute path".format(archive, raw))
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        raise ModelError("refusing to unpack {}: member '{}' points outside the destination".format(archive, raw))
    return norm


def _resolve(start: List[str], target: str, symlinks: Set[str]) -> Optional[str]:
    """``target`` followed from folder ``start``, without passing through a symlink.

    Returns the archive-relative path, or None when it climbs out; raises
    ValueError naming the symlink it would have to pass through."""
    parts = list(start)
    steps = [s for s in target.split("/") if s not in ("", ".")]
    for i, step in enumerate(steps):
        if step == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(step)
        here = "/".join(parts)
        if here in symlinks and i < len(steps) - 1:
            raise ValueError(here)
    return "/".join(parts)


def _check(entries: List[_Entry], archive: str) -> List[str]:
    """Refuse anything that could land outside the destination; returns the top-level names."""
    symlinks = {e.name for e in entries if e.kind == "symlink"}
    seen = {}  # type: Dict[str, str]
    tops = []  # type: List[str]
    for e in entries:
        refuse = "refusing to unpack {}: member '{}' ".format(archive, e.name)
        parts = e.name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in symlinks:
                raise ModelError(refuse + "lies under the symlink '{}'".format("/".join(parts[:i])))
        before = seen.get(e.name)
        if before is not None and (before != e.kind or e.kind in ("symlink", "hardlink")):
            raise ModelError(refuse + "appears twice, as a {} and as a {}".format(before, e.kind))
        if e.kind == "symlink":
            target = e.link.replace("\\", "/")
            if target.startswith("/") or re.match(r"[A-Za-z]:", target):
                raise ModelError(refuse + "is a symlink to the absolute path '{}'".format(e.link))
            try:
                resolved = _resolve(parts[:-1], target, symlinks)
            except ValueError as through:
                raise ModelError(refuse + "is a symlink through the symlink '{}'".format(through))
            if resolved is None:
                raise ModelError(refuse + "is a symlink to '{}', outside the destination".format(e.link))
        elif e.kind == "hardlink":
            target = _normalised(e.link, archive)
            if seen.get(target) != "file":
                raise ModelError(refuse + "is a hard link to '{}', which is not a file before it in the "
                                 "archive".format(e.link))
        seen[e.name] = e.kind
        if parts[0] not in tops:
            tops.append(parts[0])
    if not tops:
        raise ModelError("cannot unpack {}: the archive is empty".format(archive))
    return tops


def _tar_entries(tf: tarfile.TarFile, archive: str) -> List[_Entry]:
    entries = []
    for m in tf.getmembers():
        name = _normalised(m.name, archive)
        if m.isdir():
            kind = "dir"
        elif m.issym():
            kind = "symlink"
        elif m.islnk():
            kind = "hardlink"
        elif m.isreg():
            kind = "file"
        else:
            what = "device file" if (m.ischr() or m.isblk()) else "FIFO" if m.isfifo() else "special file"
            raise ModelError("refusing to unpack {}: member '{}' is a {}; only files, folders and links inside "
                             "the archive are unpacked".format(archive, m.name, what))
        if name != ".":
            entries.append(_Entry(name, kind, m.linkname, m))
    # tarfile ends the member list quietly at a cut-off header; a whole archive ends in a zero block
    fileobj = tf.fileobj
    assert fileobj is not None
    fileobj.seek(tf.offset)
    if fileobj.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
        raise ModelError("cannot unpack {}: the archive is cut off or damaged after {} (download it "
                         "again)".format(archive, "'{}'".format(entries[-1].name) if entries else "its start"))
    return entries


def _unpack_tar(archive: str, tmp: str) -> List[str]:
    with tarfile.open(archive, "r:*") as tf:
        entries = _tar_entries(tf, archive)
        tops = _check(entries, archive)
        members = []
        for e in entries:
            m = copy.copy(e.member)
            assert isinstance(m, tarfile.TarInfo)
            m.name = e.name
            if e.kind == "hardlink":
                m.linkname = _normalised(m.linkname, archive)
            # ours, not the archive's owner; no setuid/setgid/sticky, no group/other write
            m.uid, m.gid, m.uname, m.gname = os.geteuid(), os.getegid(), "", ""
            m.mode = (m.mode & 0o755) | (0o700 if e.kind == "dir" else 0o600)
            members.append(m)
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.12 (and backports)
        tf.extractall(tmp, members=members, **extra)  # type: ignore[arg-type]
    return tops


def _unpack_zip(archive: str, tmp: str) -> List[str]:
    with zipfile.ZipFile(archive) as zf:
        entries = []
        for info in zf.infolist():
            mode = (info.external_attr >> 16) & 0xFFFF
            name = _normalised(info.filename, archive)
            link = ""
            if info.filename.endswith("/") or stat.S_ISDIR(mode):
                kind = "dir"
            elif stat.S_ISLNK(mode):
                kind, link = "symlink", zf.read(info).decode("utf-8", "replace")
            elif stat.S_IFMT(mode) in (0, stat.S_IFREG):
                kind = "file"
            else:
                raise ModelError("refusing to unpack {}: member '{}' is a special file; only files, folders and "
                                 "links inside the archive are unpacked".format(archive, info.filename))
            if name != ".":
                entries.append(_Entry(name, kind, link, info))
        tops = _check(entries, archive)
        for e in entries:
            path = os.path.join(tmp, *e.name.split("/"))
            if e.kind == "dir":
                os.makedirs(path, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if e.kind == "symlink":
                os.symlink(e.link.replace("\\", "/"), path)
                continue
            member = e.member
            assert isinstance(member, zipfile.ZipInfo)
            with zf.open(member) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            if (member.external_attr >> 16) & 0o111:
                os.chmod(path, 0o755)
    return tops


def _check_tree(tmp: str, archive: str) -> None:
    """After unpacking: every symlink still resolves inside the temporary folder."""
    root = os.path.realpath(tmp)
    for folder, dirs, files in os.walk(tmp):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if os.path.commonpath([root, real]) != root:
                    raise ModelError("refusing to unpack {}: the symlink '{}' resolves outside the "
                                     "destination".format(archive, os.path.relpath(path, tmp)))


def _move_into_place(tmp: str, tops: List[str], dest_dir: str) -> List[str]:
    """Rename each top-level entry into ``dest_dir``; what was there goes back on failure."""
    moved = []  # type: List[Tuple[str, str, Optional[str]]]
    aside = None  # type: Optional[str]
    try:
        for top in tops:
            src, dst = os.path.join(tmp, top), os.path.join(dest_dir, top)
            old = None
            if os.path.lexists(dst):
                if aside is None:
                    aside = tempfile.mkdtemp(prefix=".replaced-", dir=tmp)
                old = os.path.join(aside, top)
                os.replace(dst, old)
            try:
                os.replace(src, dst)
            except OSError:
                if old is not None:
                    os.replace(old, dst)
                raise
            moved.append((src, dst, old))
    except OSError:
        for src, dst, old in reversed(moved):
            with contextlib.suppress(OSError):
                os.replace(dst, src)
                if old is not None:
                    os.replace(old, dst)
        raise
    return [dst for _, dst, _ in moved]


def unpack(archive: str, dest_dir: str) -> List[str]:
    """Unpack a .tar.gz/.tgz/.tar/.tar.bz2/.tar.xz/.zip into ``dest_dir``; returns its top-level paths.

    Every member is checked before anything is written: absolute paths,
    ``..`` that climbs out, symlinks or hard links pointing outside (or
    through another symlink), members under a symlink, device files and
    FIFOs are refused with a one-line :class:`ModelError`. The archive is
    unpacked into a temporary folder inside ``dest_dir`` and its top-level
    entries are renamed into place (replacing entries of the same name) only
    when all of it unpacked, so a refused or broken archive leaves
    ``dest_dir`` as it was (and removes it if this call created it).
    """
    lower = archive.lower()
    if not lower.endswith(ARCHIVE_SUFFIXES):
        raise ModelError("cannot unpack {}: not a known archive name; supported: {}".format(
            archive, ", ".join(ARCHIVE_SUFFIXES)))
    if not os.path.isfile(archive):
        raise ModelError("cannot unpack {}: no such file".format(archive))
    created = _make_dirs(dest_dir)
    done = False
    tmp = None  # type: Optional[str]
    try:
        tmp = tempfile.mkdtemp(prefix=".unpack-", dir=dest_dir)
        tops = _unpack_zip(archive, tmp) if lower.endswith(".zip") else _unpack_tar(archive, tmp)
        _check_tree(tmp, archive)
        paths = _move_into_place(tmp, tops, dest_dir)
        done = True
        return paths
    except ModelError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, UnicodeError) as exc:
        raise ModelError("cannot unpack {}: not a readable archive ({}; download it again)".format(
            archive, str(exc) or type(exc).__name__))
    except OSError as exc:
        raise ModelError("cannot unpack {} into {}: {}".format(archive, dest_dir, exc.strerror or exc))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            _remove_dirs(created)
