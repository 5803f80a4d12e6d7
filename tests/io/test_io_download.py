"""axonml.io.download on a local HTTP server: mirrors, checksums, atomic moves, progress, offline errors, archives."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import socket
import sys
import tarfile
import threading
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from axonml.io.download import (
    ArchiveError,
    ChecksumError,
    DownloadError,
    axonml_home,
    check_integrity,
    download_file,
    download_url,
    extract_archive,
    file_digest,
    mirror_url,
)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; ``/broken/...`` promises 100,000 bytes and sends 10 (a transfer that breaks off)."""

    def do_GET(self) -> None:
        if self.path.startswith("/broken/"):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server(tmp_path: Path):
    """(folder served, base URL) of an HTTP server on 127.0.0.1 in a thread."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _dead_url() -> str:
    """A URL on a port where nothing listens: connection refused, as offline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mirror"


def _payload(n: int = 300_000) -> bytes:
    return np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()


def _no_parts(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".part") or p.name.startswith(".extract-")]


def test_axonml_home(monkeypatch, tmp_path):
    monkeypatch.setenv("AXONML_HOME", str(tmp_path / "cache"))
    assert axonml_home() == tmp_path / "cache"
    monkeypatch.delenv("AXONML_HOME")
    assert axonml_home() == Path.home() / ".cache" / "axonml"


def test_default_dest_is_the_cache(server, monkeypatch, tmp_path):
    root, base = server
    (root / "f.bin").write_bytes(b"hello")
    monkeypatch.setenv("AXONML_HOME", str(tmp_path / "home"))
    path = download_file("f.bin", [base], progress=False)
    assert path == tmp_path / "home" / "downloads" / "f.bin" and path.read_bytes() == b"hello"


def test_download_verifies_and_moves_atomically(server, tmp_path, capsys):
    root, base = server
    data = _payload()
    (root / "a.bin").write_bytes(data)
    dest = tmp_path / "dest"
    path = download_file("a.bin", [base], dest, md5=hashlib.md5(data).hexdigest(),
                         sha256=hashlib.sha256(data).hexdigest())
    assert path == dest / "a.bin" and path.read_bytes() == data
    assert _no_parts(dest)
    err = capsys.readouterr().err  # plain-text progress, one summary line when stderr is not a terminal
    assert "a.bin" in err and "100%" in err and err.count("\n") == 1


def test_progress_redraws_on_a_terminal(server, tmp_path, monkeypatch):
    root, base = server
    (root / "t.bin").write_bytes(_payload())

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    download_file("t.bin", [base], tmp_path)
    out = tty.getvalue()
    assert out.startswith("\r") and "100%" in out and out.endswith("\n")


def test_progress_uses_tqdm_when_installed(server, tmp_path, monkeypatch):
    root, base = server
    data = _payload()
    (root / "q.bin").write_bytes(data)
    seen: dict[str, object] = {"updates": 0}

    class FakeTqdm:
        def __init__(self, total=None, desc=None, **kw):
            seen.update(total=total, desc=desc, closed=False)

        def update(self, n):
            seen["updates"] = int(seen["updates"]) + n  # type: ignore[call-overload]

        def close(self):
            seen["closed"] = True

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeTqdm))
    download_file("q.bin", [base], tmp_path)
    assert seen == {"updates": len(data), "total": len(data), "desc": "q.bin", "closed": True}


def test_no_progress_prints_nothing(server, tmp_path, capsys):
    root, base = server
    (root / "s.bin").write_bytes(b"x" * 10)
    download_file("s.bin", [base], tmp_path, progress=False)
    assert capsys.readouterr().err == ""


def test_existing_valid_file_is_not_fetched_again(tmp_path):
    data = b"already here"
    (tmp_path / "x.bin").write_bytes(data)
    # every mirror is down, yet the verified file is returned
    path = download_file("x.bin", [_dead_url()], tmp_path, sha256=hashlib.sha256(data).hexdigest())
    assert path.read_bytes() == data


def test_existing_corrupt_file_is_replaced(server, tmp_path):
    root, base = server
    data = _payload(5000)
    (root / "y.bin").write_bytes(data)
    (tmp_path / "y.bin").write_bytes(b"stale and wrong")
    path = download_file("y.bin", [base], tmp_path, md5=hashlib.md5(data).hexdigest(), progress=False)
    assert path.read_bytes() == data


def test_checksum_mismatch_deletes_and_reports(server, tmp_path):
    root, base = server
    (root / "c.bin").write_bytes(b"tampered content")
    with pytest.raises(ChecksumError) as info:
        download_file("c.bin", [base], tmp_path, md5="0" * 32, progress=False)
    msg = str(info.value)
    assert "c.bin" in msg and "0" * 32 in msg and hashlib.md5(b"tampered content").hexdigest() in msg
    assert "deleted" in msg and "\n" not in msg
    assert not (tmp_path / "c.bin").exists() and _no_parts(tmp_path)
    with pytest.raises(ChecksumError, match="sha256"):
        download_url(f"{base}/c.bin", tmp_path / "c.bin", sha256="f" * 64, progress=False)
    assert not (tmp_path / "c.bin").exists()


def test_offline_gives_one_clear_line(tmp_path):
    mirrors = [_dead_url(), _dead_url() + "2/"]
    with pytest.raises(DownloadError) as info:
        download_file("train-images-idx3-ubyte.gz", mirrors, tmp_path, progress=False)
    msg = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    assert "\n" not in msg and "train-images-idx3-ubyte.gz" in msg and "offline" in msg
    assert all(mirror_url(m, "train-images-idx3-ubyte.gz") in msg for m in mirrors)
    assert "refused" in msg.lower()
    assert list(tmp_path.iterdir()) == []


def test_falls_back_to_the_next_mirror(server, tmp_path):
    root, base = server
    (root / "good").mkdir()
    (root / "good" / "m.bin").write_bytes(b"from the second mirror")
    path = download_file("m.bin", [_dead_url(), f"{base}/missing", f"{base}/good"], tmp_path, progress=False)
    assert path.read_bytes() == b"from the second mirror"


def test_404_is_reported(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file("nope.bin", [base], tmp_path, progress=False)


def test_broken_transfer_leaves_nothing(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match=r"broke off|IncompleteRead"):
        download_file("z.bin", [f"{base}/broken"], tmp_path / "dest", progress=False)
    assert list((tmp_path / "dest").iterdir()) == []


def test_gunzip_md5_accepts_a_recompressed_payload(server, tmp_path):
    root, base = server
    payload = _payload(20_000)
    (root / "p.gz").write_bytes(gzip.compress(payload, compresslevel=1, mtime=0))
    raw_md5 = hashlib.md5(payload).hexdigest()
    path = download_file("p.gz", [base], tmp_path, md5="1" * 32, gunzip_md5=raw_md5, progress=False)
    assert gzip.decompress(path.read_bytes()) == payload
    assert check_integrity(path, gunzip_md5=raw_md5) and not check_integrity(path, md5="1" * 32)
    assert file_digest(path, "md5", gunzip=True) == raw_md5
    path.unlink()
    with pytest.raises(ChecksumError, match="decompressed-content"):
        download_file("p.gz", [base], tmp_path, md5="1" * 32, gunzip_md5="2" * 32, progress=False)


def test_file_urls_and_digests(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"abc")
    assert file_digest(src) == hashlib.sha256(b"abc").hexdigest()
    assert check_integrity(src, md5=hashlib.md5(b"abc").hexdigest())
    assert not check_integrity(tmp_path / "absent", md5="0" * 32)
    out = download_url(src.as_uri(), tmp_path / "copy" / "dst.bin", progress=False)
    assert out.read_bytes() == b"abc"
    with pytest.raises(ValueError, match="not an http"):
        mirror_url("ftp.example.com/x", "f")
    with pytest.raises(ValueError, match="no mirrors"):
        download_file("f", [], tmp_path)


def _tar(path: Path, files: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_extract_tar_and_zip(tmp_path):
    files = {"top/a.txt": b"A", "top/sub/b.bin": bytes(range(256))}
    out = extract_archive(_tar(tmp_path / "x.tar.gz", files), tmp_path / "t")
    assert sorted(p.relative_to(tmp_path / "t").as_posix() for p in out) == sorted(files)
    assert all((tmp_path / "t" / n).read_bytes() == d for n, d in files.items())
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
        for n, d in files.items():
            zf.writestr(n, d)
    out = extract_archive(tmp_path / "x.zip")  # default: beside the archive
    assert all((tmp_path / n).read_bytes() == d for n, d in files.items()) and len(out) == 2
    assert _no_parts(tmp_path)


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_extract_refuses_unsafe_paths(tmp_path, name):
    dest = tmp_path / "d"
    with pytest.raises(ArchiveError, match="unsafe"):
        extract_archive(_tar(tmp_path / "bad.tar", {"ok.txt": b"1", name: b"2"}, "w"), dest)
    assert not (tmp_path / "evil.txt").exists() and not (dest / "ok.txt").exists() and _no_parts(tmp_path)
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr(zipfile.ZipInfo(name), b"2")
    with pytest.raises(ArchiveError, match="unsafe"):
        extract_archive(tmp_path / "bad.zip", dest)


def test_extract_refuses_links_and_corrupt_archives(tmp_path):
    with tarfile.open(tmp_path / "link.tar", "w") as tf:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(ArchiveError, match="only regular files"):
        extract_archive(tmp_path / "link.tar", tmp_path / "d")
    good = _tar(tmp_path / "g.tar.gz", {"a.bin": _payload(50_000)}).read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(ArchiveError, match=r"cut\.tar\.gz"):
        extract_archive(tmp_path / "cut.tar.gz", tmp_path / "d")
    (tmp_path / "junk.zip").write_bytes(b"not an archive at all")
    with pytest.raises(ArchiveError, match=r"junk\.zip"):
        extract_archive(tmp_path / "junk.zip", tmp_path / "d")
    assert _no_parts(tmp_path) and not os.listdir(tmp_path / "d")
