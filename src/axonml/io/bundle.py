"""Bundles: one zip carrying a model with its data and config, every member checked by SHA-256 on extract.

Layout of a bundle (a plain zip any tool can open):

* ``bundle.json``: ``format`` (``"axonml.bundle"``), ``format_version``, the
  axonml version that wrote it, ``created`` (UTC), ``metadata`` and ``files``:
  for every other member its ``role`` (``model``, ``data`` or ``config``),
  ``size`` and ``sha256``;
* ``model/<name>``, ``config/<name>``: the files given;
* ``data/<name>`` or ``data/<folder>/<relative path>``: a data file, or every
  file under a data folder (symbolic links are followed while bundling, so a
  split made of links carries the real files).

Files that are already compressed or hold raw weights (``.axonml``, ``.pt``,
``.safetensors``, ``.gz``, images, ...) are stored; the rest are deflated.

Extracting checks everything before writing anything where it belongs: member
names (absolute paths, ``..``, drive letters, backslashes and symbolic-link
entries are refused, and every target must resolve inside the destination,
even through links already there), the member list against the manifest, and
each member's SHA-256 while it is copied to a staging folder inside the
destination. Only when all of that holds do the files move into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from ._common import IntegrityError, PathLike, SerializationError, atomic_write, open_zip
from .serialization import axonml_version

__all__ = ["BundleError", "BundleMember", "UnsafeMemberError", "create_bundle", "extract_bundle", "list_bundle",
           "read_bundle_manifest", "safe_member_path", "verify_bundle"]

FORMAT = "axonml.bundle"
FORMAT_VERSION = 1
MANIFEST = "bundle.json"
ROLES = ("model", "data", "config")
_CHUNK = 1 << 20
# extensions whose bytes deflate poorly (compressed already, or dense weights): stored as they are
_STORED_EXTS = {".axonml", ".pt", ".pth", ".bin", ".safetensors", ".npz", ".gz", ".zip", ".bz2", ".xz", ".tgz",
                ".png", ".jpg", ".jpeg", ".webp", ".gif"}


class BundleError(SerializationError):
    """A bundle that is malformed, or a request that cannot be carried out (missing input, name clash)."""


class UnsafeMemberError(BundleError):
    """A member whose path would land outside the extraction folder (absolute, ``..``, a link)."""


@dataclass
class BundleMember:
    """One file of a bundle, as :func:`list_bundle` reports it."""

    name: str
    role: str
    size: int
    sha256: str
    compressed_size: int
    compression: str  # "stored" or "deflated"
    verified: bool | None = None  # None: not checked; True/False after reading the bytes


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files_under(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` (links followed, each real folder visited once), sorted."""
    out: list[Path] = []
    seen: set[str] = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link loop, or two links to one folder
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if not path.is_file():
                raise BundleError(f"cannot bundle {path}: not a regular file (a broken link or a device?)")
            out.append(path)
    return out


def _sources(role: str, paths: Iterable[PathLike]) -> list[tuple[str, Path]]:
    """(member name, file on disk) for each path given for ``role``."""
    out: list[tuple[str, Path]] = []
    for p in paths:
        path = Path(p)
        if path.is_file():
            out.append((f"{role}/{path.name}", path))
        elif path.is_dir():
            if role != "data":
                raise BundleError(f"--{role} {path} is a folder: only data may be a folder")
            base = path.resolve().name
            files = _files_under(path)
            if not files:
                raise BundleError(f"the data folder {path} holds no file")
            out += [(f"data/{base}/{f.relative_to(path).as_posix()}", f) for f in files]
        else:
            raise FileNotFoundError(f"{role} {path}: no such file or folder")
    return out


def create_bundle(path: PathLike, *, models: Iterable[PathLike] = (), data: Iterable[PathLike] = (),
                  configs: Iterable[PathLike] = (), metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write a bundle of ``models``, ``data`` (files or folders) and ``configs`` to ``path``, atomically.

    Returns the manifest. Two inputs that would share a member name raise
    :class:`BundleError`; so does an empty bundle.
    """
    entries: list[tuple[str, str, Path]] = []
    for role, paths in (("model", models), ("data", data), ("config", configs)):
        entries += [(role, name, src) for name, src in _sources(role, paths)]
    if not entries:
        raise BundleError("a bundle needs at least one model, data or config file")
    names = [name for _, name, _ in entries]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise BundleError(f"two inputs would be stored under the same name: {clash} (rename one of them)")
    out = Path(path)
    if out.resolve() in {src.resolve() for _, _, src in entries}:
        raise BundleError(f"the bundle {out} is also one of its inputs")
    files: dict[str, dict[str, Any]] = {}
    with atomic_write(out) as f, zipfile.ZipFile(f, "w", allowZip64=True) as zf:
        for role, name, src in entries:
            h = hashlib.sha256()
            size = 0
            method = zipfile.ZIP_STORED if src.suffix.lower() in _STORED_EXTS else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed dates: same inputs, same bytes
            info.compress_type = method
            info.external_attr = 0o644 << 16
            with open(src, "rb") as fin, zf.open(info, "w", force_zip64=True) as dst:
                while chunk := fin.read(_CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
            files[name] = {"role": role, "size": size, "sha256": h.hexdigest()}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "axonml_version": axonml_version(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "metadata": dict(metadata or {}),
            "files": files,
        }
        try:
            text = json.dumps(manifest, indent=2, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise BundleError(f"bundle metadata must be JSON: {e}") from e
        zf.writestr(zipfile.ZipInfo(MANIFEST, date_time=(1980, 1, 1, 0, 0, 0)), text, zipfile.ZIP_DEFLATED)
    return manifest


# ----- reading -------------------------------------------------------------------------------------
def safe_member_path(name: str) -> PurePosixPath:
    """``name`` as a relative POSIX path that stays inside a folder, or :class:`UnsafeMemberError`."""
    bad = (not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name
           or (len(name) > 1 and name[1] == ":"))
    rel = PurePosixPath(name)
    if bad or any(part in ("..", ".", "") for part in name.rstrip("/").split("/")):
        raise UnsafeMemberError(f"refusing the member path {name!r}: it could land outside the target folder")
    return rel


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)  # the Unix mode sits in the high 16 bits


def _manifest(zf: zipfile.ZipFile, what: str) -> dict[str, Any]:
    try:
        manifest = json.loads(zf.read(MANIFEST))
    except KeyError:
        raise BundleError(f"{what}: not an axonml bundle (no {MANIFEST})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, zipfile.BadZipFile, RecursionError) as e:
        raise BundleError(f"{what}: {MANIFEST} is corrupt ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{what}: not an axonml bundle (format {got!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(f"{what}: bundle format {version!r} is newer than this axonml reads ({FORMAT_VERSION})")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{what}: the manifest lists no files")
    for name, entry in files.items():
        safe_member_path(name)
        if (not isinstance(entry, dict) or entry.get("role") not in ROLES or not isinstance(entry.get("size"), int)
                or not isinstance(entry.get("sha256"), str)):
            raise BundleError(f"{what}: bad manifest entry for {name!r}")
    return manifest


def _checked_infos(zf: zipfile.ZipFile, manifest: dict[str, Any], what: str) -> dict[str, zipfile.ZipInfo]:
    """The zip entries of the listed members; unsafe names, links, extra or missing members raise."""
    infos: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        safe_member_path(info.filename)
        if _is_link(info):
            raise UnsafeMemberError(f"{what}: refusing the member {info.filename!r}: it is a symbolic link")
        if info.filename == MANIFEST or info.is_dir():
            continue
        if info.filename in infos:
            raise BundleError(f"{what}: the member {info.filename!r} appears twice")
        infos[info.filename] = info
    listed = manifest["files"]
    extra = sorted(set(infos) - set(listed))
    if extra:
        raise IntegrityError(f"{what}: members not listed in the manifest: {extra}")
    missing = sorted(set(listed) - set(infos))
    if missing:
        raise IntegrityError(f"{what}: members listed in the manifest are missing: {missing}")
    return infos


def _copy_checked(zf: zipfile.ZipFile, info: zipfile.ZipInfo, entry: dict[str, Any], out: Any, what: str) -> None:
    """Stream one member into ``out`` (a binary file or None), checking its size and SHA-256."""
    h = hashlib.sha256()
    size = 0
    try:
        with zf.open(info) as src:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
                if out is not None:
                    out.write(chunk)
    except (zipfile.BadZipFile, EOFError, OSError) as e:  # zipfile's CRC-32 check, or a truncated file
        raise IntegrityError(f"{what}: member {info.filename!r} is corrupt ({e})") from e
    if size != entry["size"] or h.hexdigest() != entry["sha256"]:
        raise IntegrityError(f"{what}: member {info.filename!r} does not match its SHA-256 in the manifest "
                             "(the bundle was modified or is corrupt)")


def read_bundle_manifest(path: PathLike) -> dict[str, Any]:
    """The manifest of a bundle (its format and member names are checked; no member is read)."""
    what = f"bundle {os.fspath(path)}"
    with open_zip(path, what) as zf:
        return _manifest(zf, what)


def list_bundle(path: PathLike, *, verify: bool = False) -> tuple[dict[str, Any], list[BundleMember]]:
    """The manifest and the members of a bundle; ``verify=True`` also hashes each member (``verified``)."""
    what = f"bundle {os.fspath(path)}"
    with open_zip(path, what) as zf:
        manifest = _manifest(zf, what)
        infos = _checked_infos(zf, manifest, what)
        members = []
        for name, entry in manifest["files"].items():
            info = infos[name]
            ok: bool | None = None
            if verify:
                try:
                    _copy_checked(zf, info, entry, None, what)
                    ok = True
                except IntegrityError:
                    ok = False
            members.append(BundleMember(name, entry["role"], entry["size"], entry["sha256"], info.compress_size,
                                        "stored" if info.compress_type == zipfile.ZIP_STORED else "deflated", ok))
    return manifest, members


def verify_bundle(path: PathLike) -> dict[str, Any]:
    """Check every member against the manifest (raises :class:`IntegrityError`); returns the manifest."""
    what = f"bundle {os.fspath(path)}"
    with open_zip(path, what) as zf:
        manifest = _manifest(zf, what)
        infos = _checked_infos(zf, manifest, what)
        for name, entry in manifest["files"].items():
            _copy_checked(zf, infos[name], entry, None, what)
    return manifest


def _inside(root: Path, rel: PurePosixPath) -> Path:
    """``root / rel``, refusing a target that resolves (through links already there) outside ``root``."""
    target = root / Path(*rel.parts)
    real_root = root.resolve()
    resolved = target.resolve()
    if resolved != real_root and real_root not in resolved.parents:
        raise UnsafeMemberError(f"refusing the member {rel.as_posix()!r}: it resolves to {resolved}, "
                                f"outside {real_root} (through a link?)")
    return target


def extract_bundle(path: PathLike, dest: PathLike, *, overwrite: bool = False) -> list[Path]:
    """Verify a bundle and extract its members into ``dest`` (created if needed); returns the files written.

    Nothing lands in place unless every check passes (see the module notes).
    Existing files are refused unless ``overwrite``.
    """
    what = f"bundle {os.fspath(path)}"
    root = Path(dest)
    with open_zip(path, what) as zf:
        manifest = _manifest(zf, what)
        infos = _checked_infos(zf, manifest, what)
        root.mkdir(parents=True, exist_ok=True)
        targets = {name: _inside(root, safe_member_path(name)) for name in manifest["files"]}
        existing = sorted(str(t) for t in targets.values() if t.exists() or t.is_symlink())
        if existing and not overwrite:
            raise BundleError(f"{what}: would overwrite {len(existing)} existing file(s), e.g. {existing[0]} "
                              "(pass overwrite=True / --force)")
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".bundle-extract-"))
        try:
            staged: list[tuple[Path, Path]] = []
            for i, (name, entry) in enumerate(manifest["files"].items()):
                tmp = staging / str(i)
                with open(tmp, "wb") as out:
                    _copy_checked(zf, infos[name], entry, out, what)
                staged.append((tmp, targets[name]))
            for tmp, final in staged:
                final.parent.mkdir(parents=True, exist_ok=True)
                _inside(root, PurePosixPath(final.relative_to(root).as_posix()))  # no link swapped in meanwhile
                with contextlib.suppress(FileNotFoundError):
                    if final.is_symlink():
                        final.unlink()
                os.replace(tmp, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return list(targets.values())
