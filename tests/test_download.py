from __future__ import annotations

import gzip
import hashlib
import logging
import socket
import stat
import warnings
from pathlib import Path

import pytest

from ds.data import (
    MNIST_SAMPLE,
    DatasetUnavailableError,
    SampleFallbackWarning,
    clear_memory_cache,
    load_mnist,
)
from ds.download import DownloadError, any_reachable, fetch_verified

NAME = "t10k-images-idx3-ubyte.gz"
SHA = MNIST_SAMPLE.test_images.sha256


@pytest.fixture
def refused_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


@pytest.fixture(autouse=True)
def _fresh_memory_cache():
    clear_memory_cache()
    yield
    clear_memory_cache()


def _decompressed_sha256(path: Path) -> str:
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


def test_download_success(tmp_path: Path, http_mirror) -> None:
    dest = tmp_path / "new" / "dir"
    path = fetch_verified(NAME, SHA, dest, [http_mirror.url("good")], timeout_s=5)
    assert path == dest / NAME
    assert _decompressed_sha256(path) == SHA
    assert sorted(p.name for p in dest.iterdir()) == [NAME]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by every user of a shared data folder


def test_mirror_without_trailing_slash(tmp_path: Path, http_mirror) -> None:
    path = fetch_verified(NAME, SHA, tmp_path, [http_mirror.url("good").rstrip("/")], timeout_s=5)
    assert _decompressed_sha256(path) == SHA


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("corrupt", "decompressed SHA-256 is"),
        ("badgzip", "not a valid gzip file"),
        ("truncated", "interrupted download"),
        ("missing", "HTTP 404"),
    ],
)
def test_bad_mirror_is_skipped_and_leaves_nothing_behind(
    tmp_path: Path, http_mirror, caplog, mode: str, reason: str
) -> None:
    caplog.set_level(logging.WARNING, logger="ds.download")
    mirrors = [http_mirror.url(mode), http_mirror.url("good")]
    path = fetch_verified(NAME, SHA, tmp_path, mirrors, timeout_s=5)
    assert _decompressed_sha256(path) == SHA
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]
    assert http_mirror.requests == [f"/{mode}/{NAME}", f"/good/{NAME}"]
    warnings_logged = [r.getMessage() for r in caplog.records if r.name == "ds.download"]
    assert len(warnings_logged) == 1
    assert http_mirror.url(mode) + NAME in warnings_logged[0] and reason in warnings_logged[0]


def test_interrupted_download_alone_leaves_no_file(tmp_path: Path, http_mirror) -> None:
    with pytest.raises(DownloadError, match="interrupted download"):
        fetch_verified(NAME, SHA, tmp_path, [http_mirror.url("truncated")], timeout_s=5)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_download_does_not_replace_existing_file(tmp_path: Path, http_mirror) -> None:
    existing = tmp_path / NAME
    existing.write_bytes(b"keep me")
    with pytest.raises(DownloadError):
        fetch_verified(NAME, SHA, tmp_path, [http_mirror.url("corrupt")], timeout_s=5)
    assert existing.read_bytes() == b"keep me"
    assert list(tmp_path.iterdir()) == [existing]


def test_all_mirrors_failing_lists_every_mirror(tmp_path: Path, http_mirror, refused_url: str) -> None:
    mirrors = [http_mirror.url("missing"), refused_url, http_mirror.url("corrupt")]
    with pytest.raises(DownloadError) as info:
        fetch_verified(NAME, SHA, tmp_path / "new" / "dir", mirrors, timeout_s=5)
    message = str(info.value)
    assert NAME in message and str(tmp_path) in message
    assert f"{http_mirror.url('missing')}{NAME}: HTTP 404" in message
    assert f"{refused_url}{NAME}: cannot connect" in message
    assert f"{http_mirror.url('corrupt')}{NAME}: decompressed SHA-256 is" in message
    assert list(tmp_path.iterdir()) == [], "the folders it made are removed, the one that was there stays"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"sha256_of_decompressed": "abc"}, "64 hexadecimal digits"),
        ({"mirrors": []}, "non-empty sequence"),
        ({"mirrors": "http://x/"}, "non-empty sequence"),
        ({"timeout_s": 0}, "seconds > 0"),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict, fragment: str) -> None:
    args = {"filename": NAME, "sha256_of_decompressed": SHA, "dest_dir": tmp_path, "mirrors": ["http://x/"]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        fetch_verified(**args)


# --- load_mnist on top of the downloader -------------------------------------


def test_load_mnist_downloads_missing_files(tmp_path: Path, http_mirror, sample_dir: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # One file is already there: only the other three are fetched.
    (data_dir / NAME).write_bytes((sample_dir / NAME).read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_mnist(data_dir, mirrors=[http_mirror.url("good")], timeout_s=5, spec=MNIST_SAMPLE)
    assert data.identity.name == "mnist-sample"
    assert (data.identity.train_size, data.identity.test_size) == (8000, 2000)
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(r.filename for r in MNIST_SAMPLE.resources())
    assert len(http_mirror.requests) == 3 and all(r.startswith("/good/") for r in http_mirror.requests)


def test_load_mnist_falls_back_to_sample_when_all_mirrors_fail(
    tmp_path: Path, http_mirror, refused_url: str
) -> None:
    data_dir = tmp_path / "data"
    with pytest.warns(SampleFallbackWarning) as record:
        data = load_mnist(data_dir, mirrors=[http_mirror.url("corrupt"), refused_url], timeout_s=5)
    assert data.identity.name == "mnist-sample"
    assert (len(data.train_y), len(data.test_y)) == (8000, 2000)
    message = str(record[0].message)
    for fragment in (str(data_dir), "paths.data", "DS_DATA_DIR", "network access", "downloading failed"):
        assert fragment in message, message
    # Nothing half-downloaded stays behind, not even the data_dir it made.
    assert not data_dir.exists()


def test_load_mnist_without_fallback_raises(tmp_path: Path, http_mirror) -> None:
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist(data_dir, mirrors=[http_mirror.url("truncated")], timeout_s=5, sample_fallback=False)
    message = str(info.value)
    for fragment in (str(data_dir), "train-images-idx3-ubyte.gz", "interrupted download", "DS_DATA_DIR"):
        assert fragment in message, message
    assert not data_dir.exists()


def test_offline_one_quick_check_skips_the_mirrors_and_the_fallback_is_one_short_line(
    tmp_path: Path, http_mirror, refused_url: str, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="ds.data")
    unreachable = [refused_url, refused_url.replace("/mnist/", "/other/")]
    assert any_reachable([http_mirror.url("good")]) and not any_reachable(unreachable)

    with pytest.warns(SampleFallbackWarning) as record:
        data = load_mnist(tmp_path / "data", mirrors=unreachable, timeout_s=5)

    assert data.identity.name == "mnist-sample"
    assert "not downloaded (offline: no mirror could be reached)" in str(record[0].message)
    [line] = [r.getMessage() for r in caplog.records if "FALLING BACK" in r.getMessage()]
    assert len(line) < 200 and "not in paths.data, offline" in line, line
    assert not (tmp_path / "data").exists()
