"""Download one gzip-compressed file from a list of mirrors, verified by checksum.

The checksum is the SHA-256 of the *decompressed* content: mirrors re-compress
files (the MNIST train-images .gz differs byte-wise between sources), so the gz
bytes cannot be pinned. A file only appears under its final name after it has
been verified; failed attempts leave nothing behind, not even the folder
they made.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import logging
import os
import re
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_USER_AGENT = "ds-mnist-fetch/1 (Python urllib)"


class DownloadError(RuntimeError):
    """No mirror delivered a file with the expected content."""


class _RejectedDownload(Exception):
    """A mirror answered, but what it sent is not the expected file."""


def fetch_verified(
    filename: str,
    sha256_of_decompressed: str,
    dest_dir: str | os.PathLike[str],
    mirrors: Sequence[str],
    timeout_s: float = 10.0,
) -> Path:
    """Download `filename` from the first mirror that serves it intact.

    Each mirror is a base URL; the file's URL is the base joined with
    `filename`. The download is streamed into a temporary file in `dest_dir`,
    its gunzipped content is checked against `sha256_of_decompressed`, and only
    then is it renamed to `dest_dir/filename`. `timeout_s` bounds connecting
    and each wait for data. Returns the final path; raises `DownloadError`
    naming every mirror and why it failed.
    """
    expected = sha256_of_decompressed.lower()
    if not _SHA256_HEX.fullmatch(expected):
        raise ValueError(
            f"sha256_of_decompressed for {filename} is {sha256_of_decompressed!r}; "
            "expected 64 hexadecimal digits."
        )
    if not mirrors or isinstance(mirrors, str):
        raise ValueError(
            f"mirrors for {filename} is {mirrors!r}; expected a non-empty sequence "
            "of base URLs such as ['https://example.org/mnist/']."
        )
    if not timeout_s > 0:
        raise ValueError(f"timeout_s for {filename} is {timeout_s!r}; expected seconds > 0.")
    dest_dir = Path(dest_dir)
    made = _make_dirs(dest_dir)
    target = dest_dir / filename

    failures: list[tuple[str, str]] = []
    for mirror in mirrors:
        url = mirror if mirror.endswith("/") else mirror + "/"
        url += filename
        try:
            _download_to(url, target, expected, timeout_s)
        except (_RejectedDownload, OSError, EOFError, zlib.error, http.client.HTTPException) as exc:
            reason = _describe(exc)
            failures.append((url, reason))  # said once: below, or by the error when every mirror fails
            continue
        for failed_url, reason in failures:
            logger.warning(
                "mirror %s failed for %s: %s; the next mirror served it", failed_url, filename, reason
            )
        logger.info("downloaded %s from %s", target, url)
        return target

    for folder in made:  # deepest first; a folder something else wrote into stays
        with contextlib.suppress(OSError):
            folder.rmdir()
    reasons = {reason for _, reason in failures}
    tried = (
        f"all {len(failures)}: {reasons.pop()}"  # offline: one reason, said once
        if len(reasons) == 1 and len(failures) > 1
        else "; ".join(f"{url}: {reason}" for url, reason in failures)
    )
    raise DownloadError(
        f"could not download {filename} into {dest_dir}: every mirror failed ({tried}). Check the network "
        "connection and the mirror list, or place the file there by hand."
    )


def any_reachable(mirrors: Sequence[str], timeout_s: float = 1.5) -> bool:
    """Whether any mirror's host accepts a connection within `timeout_s` (all tried at once): one quick
    check, so that an offline run skips the mirrors instead of waiting on each file at each of them.
    A mirror that is not http(s) (file://) counts as reachable."""
    answered = threading.Event()
    hosts = set()
    for mirror in mirrors:
        parsed = urllib.parse.urlsplit(mirror)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            return True
        hosts.add((parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)))

    def connect(address: tuple[str, int]) -> None:
        with contextlib.suppress(OSError), socket.create_connection(address, timeout=timeout_s):
            answered.set()

    threads = [threading.Thread(target=connect, args=(address,), daemon=True) for address in hosts]
    for thread in threads:
        thread.start()
    end = time.monotonic() + timeout_s  # a name lookup that hangs is not waited for past it
    for thread in threads:
        thread.join(timeout=max(0.0, end - time.monotonic()))
        if answered.is_set():
            break
    return answered.is_set()


def _make_dirs(path: Path) -> list[Path]:
    """`mkdir -p path`; returns the folders it made, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    if missing:
        missing[0].mkdir(parents=True, exist_ok=True)
    return missing


def _download_to(url: str, target: Path, expected_sha256: str, timeout_s: float) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)  # another process's failed attempt may have removed it
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, timeout_s, target.name)
            out.flush()
            os.fsync(out.fileno())
        actual = _gunzipped_sha256(tmp)
        if actual != expected_sha256:
            raise _RejectedDownload(
                f"decompressed SHA-256 is {actual}, expected {expected_sha256} (corrupt or different file)"
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a shared data folder's files are for every user
        os.replace(tmp, target)
    finally:
        # After a successful os.replace the temp name is gone, so this only
        # removes the partial file of a failed or interrupted attempt.
        tmp.unlink(missing_ok=True)


def _stream(url: str, out: BinaryIO, timeout_s: float, label: str) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        length_header = response.headers.get("Content-Length")
        expected_len = int(length_header) if length_header and length_header.isdigit() else None
        received = 0
        with tqdm(
            total=expected_len,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            leave=False,
            disable=None,  # tqdm's "None" means: only when writing to a terminal
        ) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client does not raise when the server closes before Content-Length
    # bytes arrived; it just reports end of body, so check the count here.
    if expected_len is not None and received != expected_len:
        raise _RejectedDownload(
            f"connection ended after {received} of {expected_len} bytes (interrupted download)"
        )


def _gunzipped_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect ({exc.reason})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, (gzip.BadGzipFile, EOFError, zlib.error)):
        return f"not a valid gzip file ({exc})"
    return str(exc) or type(exc).__name__
