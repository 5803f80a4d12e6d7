"""Downloads into the axonml cache: mirrors in order, checksums verified, atomic moves, a clear error offline.

The cache lives in ``$AXONML_HOME`` (default ``~/.cache/axonml``); :func:`axonml_home` says where.

:func:`download_file` fetches one file by name from a list of mirror base URLs
(``base + "/" + filename``), trying each in turn. Every download streams into a
temporary ``.part`` file beside its destination, is checked against the expected
MD5 and/or SHA-256, then moves into place with ``os.replace`` (atomic on one file
system): an interrupted or corrupt download never appears under the final name.
A checksum mismatch deletes the download and raises :class:`ChecksumError`; when
no mirror answers (offline, refused, 404) :class:`DownloadError` says, on one
line, which file it wanted and every URL it tried.

Progress goes to stderr: through ``tqdm`` when it is installed, else as plain
text (a self-updating line on a terminal, one summary line otherwise).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import AxonmlError
from ._common import fsync_dir

__all__ = [
    "ENV_HOME", "DownloadError", "ChecksumError", "ArchiveError", "axonml_home", "file_digest", "check_integrity",
    "mirror_url", "download_url", "download_file", "extract_archive",
]

ENV_HOME = "AXONML_HOME"
USER_AGENT = "axonml-downloader/0.1"
_CHUNK = 1 << 16
_SCHEMES = ("http://", "https://", "file://")


class DownloadError(AxonmlError, RuntimeError):
    """A file could not be fetched: no mirror answered, or the transfer broke off."""


class ChecksumError(DownloadError):
    """A downloaded file did not match its expected checksum (the file was deleted)."""


class ArchiveError(AxonmlError, ValueError):
    """An archive is corrupt, of an unknown kind, or holds unsafe members (absolute paths, ``..``, links)."""


def axonml_home() -> Path:
    """The axonml cache folder: ``$AXONML_HOME`` when set, else ``~/.cache/axonml``."""
    env = os.environ.get(ENV_HOME)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "axonml"


def file_digest(path: str | Path, algorithm: str = "sha256", *, gunzip: bool = False) -> str:
    """Hex digest of a file (``algorithm`` is any hashlib name); ``gunzip=True`` hashes its decompressed content."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    opener: Any = gzip.open if gunzip else open
    with opener(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _mismatch(path: Path, md5: str | None, sha256: str | None, gunzip_md5: str | None) -> str | None:
    """None when ``path`` matches every given checksum, else a description of what differs."""
    if sha256 is not None:
        got = file_digest(path, "sha256")
        if got != sha256.lower():
            return f"expected sha256 {sha256}, got {got}"
    if md5 is None and gunzip_md5 is None:
        return None
    got = file_digest(path, "md5")
    if md5 is not None and got == md5.lower():
        return None
    if gunzip_md5 is not None:
        # a mirror may recompress the same payload: then the decompressed content must match
        try:
            if file_digest(path, "md5", gunzip=True) == gunzip_md5.lower():
                return None
        except (OSError, EOFError, zlib.error):
            pass
    want = " or ".join(x for x in (md5 and f"md5 {md5}", gunzip_md5 and f"decompressed-content md5 {gunzip_md5}") if x)
    return f"expected {want}, got md5 {got}"


def check_integrity(path: str | Path, md5: str | None = None, sha256: str | None = None,
                    gunzip_md5: str | None = None) -> bool:
    """True when ``path`` exists and matches every given checksum (``gunzip_md5`` may stand in for ``md5``)."""
    p = Path(path)
    return p.is_file() and _mismatch(p, md5, sha256, gunzip_md5) is None


def mirror_url(base: str, filename: str) -> str:
    """The URL of ``filename`` under the mirror ``base`` (http, https or file URL)."""
    if not base.startswith(_SCHEMES):
        raise ValueError(f"mirror {base!r} is not an http://, https:// or file:// URL")
    return base if base.endswith("/" + filename) else base.rstrip("/") + "/" + filename


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class _Progress:
    """A progress bar on stderr: tqdm when installed, else plain text."""

    def __init__(self, name: str, total: int | None, enabled: bool) -> None:
        self.name, self.total, self.enabled = name, total, enabled
        self.done, self.start, self.last = 0, time.monotonic(), 0.0
        self.stream: IO[str] = sys.stderr
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                                file=self.stream)

    def _line(self) -> str:
        if self.total:
            return f"{self.name}: {100 * self.done // self.total:3d}% ({_human(self.done)} of {_human(self.total)})"
        return f"{self.name}: {_human(self.done)}"

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if self.tty and now - self.last > 0.1:  # redraw at most 10 times a second
            self.last = now
            self.stream.write("\r" + self._line())
            self.stream.flush()

    def close(self, ok: bool) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
            return
        if ok:
            secs = time.monotonic() - self.start
            self.stream.write(("\r" if self.tty else "") + self._line() + f" in {secs:.1f} s\n")
        elif self.tty:
            self.stream.write("\n")
        self.stream.flush()


def _fetch(url: str, out: IO[bytes], name: str, progress: bool, timeout: float) -> None:
    """Stream ``url`` into ``out``; network failures become DownloadError(reason)."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    bar: _Progress | None = None
    ok = False
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length is not None and length.isdigit() else None
            bar = _Progress(name, total, progress)
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
            if total is not None and bar.done != total:
                raise DownloadError(f"transfer broke off after {bar.done} of {total} bytes")
            ok = True
    except urllib.error.HTTPError as e:
        raise DownloadError(f"HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise DownloadError(str(e.reason)) from e
    except (http.client.HTTPException, OSError) as e:  # broken transfers, timeouts, resets
        raise DownloadError(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from e
    finally:
        if bar is not None:
            bar.close(ok)


def download_url(url: str, path: str | Path, *, md5: str | None = None, sha256: str | None = None,
                 gunzip_md5: str | None = None, progress: bool = True, timeout: float = 30.0) -> Path:
    """Fetch one URL to ``path``: stream to a temporary file, verify the checksums, then move it into place.

    Raises :class:`ChecksumError` (the download deleted) on a mismatch and
    :class:`DownloadError` when the transfer fails. ``gunzip_md5`` is accepted in
    place of ``md5`` as the MD5 of the gzip-decompressed content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                _fetch(url, out, path.name, progress, timeout)
            except DownloadError as e:
                raise DownloadError(f"cannot download {url}: {e}") from e
            out.flush()
            os.fsync(out.fileno())
        problem = _mismatch(tmp, md5, sha256, gunzip_md5)
        if problem is not None:
            raise ChecksumError(f"{path.name} from {url} is corrupt ({problem}); the download was deleted")
        os.replace(tmp, path)
        fsync_dir(path.parent)  # the rename itself survives a crash
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def download_file(filename: str, mirrors: Sequence[str], dest_dir: str | Path | None = None, *,
                  md5: str | None = None, sha256: str | None = None, gunzip_md5: str | None = None,
                  progress: bool = True, timeout: float = 30.0) -> Path:
    """Fetch ``filename`` into ``dest_dir`` (default ``axonml_home()/"downloads"``) from the first mirror that works.

    Each mirror is a base URL; the file's URL is ``base/filename``. A file already
    there that matches the checksums is not fetched again. When every mirror
    fails, raises :class:`ChecksumError` if all that answered sent corrupt data,
    else :class:`DownloadError` naming the file and each URL tried with its reason.
    """
    if not mirrors:
        raise ValueError(f"download_file({filename!r}): no mirrors given")
    dest_dir = Path(dest_dir) if dest_dir is not None else axonml_home() / "downloads"
    dest = dest_dir / filename
    if dest.is_file() and _mismatch(dest, md5, sha256, gunzip_md5) is None:
        return dest
    failures: list[str] = []
    corrupt = 0
    for base in mirrors:
        url = mirror_url(base, filename)
        try:
            return download_url(url, dest, md5=md5, sha256=sha256, gunzip_md5=gunzip_md5, progress=progress,
                                timeout=timeout)
        except ChecksumError as e:
            corrupt += 1
            failures.append(str(e))
        except DownloadError as e:
            failures.append(str(e).removeprefix("cannot download "))
    if corrupt == len(failures):
        raise ChecksumError(f"{filename}: every mirror sent a corrupt file: " + "; ".join(failures))
    raise DownloadError(f"cannot download {filename} into {dest_dir} (offline?): tried " + "; ".join(failures)
                        + f". Put {filename} there by hand, or use a reachable mirror")


def _safe_member(name: str, archive: Path) -> Path:
    """The relative path of an archive member, refusing absolute paths and ``..``."""
    rel = Path(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or rel.drive:
        raise ArchiveError(f"{archive}: refusing the unsafe member path {name!r}")
    return rel


def _iter_members(archive: Path) -> Iterator[tuple[Path, IO[bytes]]]:
    """(relative path, open file) for each regular file of a zip or tar archive; links and devices refused."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield _safe_member(info.filename, archive), zf.open(info)
        return
    if not tarfile.is_tarfile(archive):
        raise ArchiveError(f"{archive}: not a zip or tar archive (or a corrupt one)")
    with tarfile.open(archive) as tf:
        for m in tf:
            if m.isdir():
                continue
            if not m.isfile():
                raise ArchiveError(f"{archive}: refusing the member {m.name!r}: only regular files are extracted")
            rel = _safe_member(m.name, archive)
            src = tf.extractfile(m)
            assert src is not None  # a regular file always has content
            yield rel, src


def extract_archive(archive: str | Path, dest_dir: str | Path | None = None) -> list[Path]:
    """Extract a zip or tar (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) archive into ``dest_dir``; return the files.

    Members are first written into a temporary folder inside ``dest_dir``, then each
    file moves into place atomically: a failure midway leaves no half-written file.
    Absolute paths, ``..`` and links are refused (:class:`ArchiveError`).
    """
    archive = Path(archive)
    dest = Path(dest_dir) if dest_dir is not None else archive.parent
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    staged: list[tuple[Path, Path]] = []
    try:
        try:
            for rel, member in _iter_members(archive):
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with member as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                staged.append((target, dest / rel))
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
            raise ArchiveError(f"{archive} is truncated or corrupt: {type(e).__name__}: {e}") from e
        for src_path, final in staged:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src_path, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [final for _, final in staged]
