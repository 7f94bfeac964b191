"""Read and write the IDX files that MNIST is distributed in.

Only the unsigned-byte IDX variants used by MNIST are supported: images
(magic 0x00000803, N x 28 x 28) and labels (magic 0x00000801, N). Files may be
gzip-compressed or not; which one is decided by the gzip magic bytes, so a
mis-named file still reads. Every problem with a file is reported as an
`IdxFormatError` that names the file and says what was expected.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
UBYTE_DTYPE_CODE = 0x08
IMAGE_ROWS = 28
IMAGE_COLS = 28
NUM_CLASSES = 10


class IdxFormatError(ValueError):
    """An IDX file is missing, unreadable, corrupt or not an MNIST IDX file."""


def read_idx_bytes(path: str | os.PathLike[str]) -> bytes:
    """Return the raw IDX content of `path`, gunzipped if it is gzip data."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IdxFormatError(
            f"IDX file {path} does not exist; expected an MNIST IDX file "
            "(gzip-compressed or uncompressed) at that path."
        ) from None
    except OSError as exc:
        raise IdxFormatError(
            f"IDX file {path} cannot be read ({exc.strerror or exc}); expected a "
            "readable regular file holding MNIST IDX data."
        ) from exc
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxFormatError(
            f"IDX file {path} starts with the gzip magic bytes but is not a valid "
            f"gzip stream ({exc}); the file is corrupt or truncated. Delete it and "
            "obtain a fresh copy."
        ) from exc


def parse_idx(data: bytes, source: str | os.PathLike[str]) -> np.ndarray:
    """Parse uncompressed MNIST IDX bytes into a read-only uint8 array.

    `source` only names the origin of `data` in error messages. Images come
    back as [N, 28, 28], labels as [N]; the array is a view of `data`.
    """
    if len(data) < 4:
        raise IdxFormatError(
            f"IDX file {source} is {len(data)} bytes long, too short for the "
            "4-byte IDX magic number; the file is empty or truncated."
        )
    magic = int.from_bytes(data[:4], "big")
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        if data[:2] == b"\0\0" and data[2] != UBYTE_DTYPE_CODE:
            problem = f"its data-type byte is 0x{data[2]:02x}"
        else:
            problem = f"its magic number is 0x{magic:08x}"
        raise IdxFormatError(
            f"IDX file {source} is not an MNIST IDX file: {problem}, expected "
            f"magic 0x{IMAGES_MAGIC:08x} (images) or 0x{LABELS_MAGIC:08x} (labels) "
            f"with data-type byte 0x{UBYTE_DTYPE_CODE:02x} (unsigned byte)."
        )
    ndim = data[3]
    kind = "images" if magic == IMAGES_MAGIC else "labels"
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxFormatError(
            f"IDX file {source} is truncated: it is {len(data)} bytes long but an "
            f"IDX {kind} header alone takes {header_len} bytes."
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    if kind == "images" and dims[1:] != (IMAGE_ROWS, IMAGE_COLS):
        raise IdxFormatError(
            f"IDX file {source} holds images of shape {tuple(dims[1:])}; expected "
            f"{IMAGE_ROWS}x{IMAGE_COLS} MNIST images."
        )
    expected = header_len + math.prod(dims)
    if len(data) != expected:
        shape = " x ".join(str(d) for d in dims)
        if len(data) < expected:
            problem = f"truncated: it has {len(data) - header_len} data bytes"
        else:
            problem = (
                f"followed by {len(data) - expected} trailing bytes: "
                f"it has {len(data) - header_len} data bytes"
            )
        raise IdxFormatError(
            f"IDX file {source} is {problem}, but its header promises {shape} = "
            f"{expected - header_len} bytes of {kind}. The file is damaged; obtain a "
            "fresh copy."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one MNIST IDX file (.gz or uncompressed) into a read-only uint8 array."""
    return parse_idx(read_idx_bytes(path), path)


def check_mnist_pair(
    images: np.ndarray,
    labels: np.ndarray,
    images_source: str | os.PathLike[str],
    labels_source: str | os.PathLike[str],
) -> None:
    """Check that parsed images and labels belong together and labels are 0..9."""
    if images.ndim != 3:
        raise IdxFormatError(
            f"IDX file {images_source} was given as the images file but holds "
            f"{images.ndim}-dimensional data; expected an images file (magic "
            f"0x{IMAGES_MAGIC:08x}). Are the images and labels paths swapped?"
        )
    if labels.ndim != 1:
        raise IdxFormatError(
            f"IDX file {labels_source} was given as the labels file but holds "
            f"{labels.ndim}-dimensional data; expected a labels file (magic "
            f"0x{LABELS_MAGIC:08x}). Are the images and labels paths swapped?"
        )
    if len(images) != len(labels):
        raise IdxFormatError(
            f"IDX files {images_source} ({len(images)} images) and {labels_source} "
            f"({len(labels)} labels) do not match: expected one label per image. "
            "The two files come from different datasets or one is damaged."
        )
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        first = int(bad[0])
        raise IdxFormatError(
            f"IDX file {labels_source} holds {bad.size} label(s) outside 0..9, the "
            f"first is {int(labels[first])} at index {first}; expected MNIST digit "
            "labels 0..9."
        )


def read_mnist_pair(
    images_path: str | os.PathLike[str], labels_path: str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file and its labels file: ([N, 28, 28] uint8, [N] uint8)."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    check_mnist_pair(images, labels, images_path, labels_path)
    return images, labels


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array of MNIST images [N, 28, 28] or labels [N] as IDX bytes."""
    if array.dtype != np.uint8:
        raise ValueError(f"IDX arrays must have dtype uint8, got {array.dtype}.")
    if array.ndim == 1:
        magic = LABELS_MAGIC
    elif array.ndim == 3 and array.shape[1:] == (IMAGE_ROWS, IMAGE_COLS):
        magic = IMAGES_MAGIC
    else:
        raise ValueError(
            f"IDX arrays must be labels [N] or images [N, {IMAGE_ROWS}, {IMAGE_COLS}], "
            f"got shape {array.shape}."
        )
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write `array` as an IDX file, gzip-compressed if `path` ends in ".gz".

    The gzip header carries mtime 0 and no file name, so the same array always
    gives the same bytes (for a given zlib). The file appears atomically.
    """
    path = Path(path)
    payload = encode_idx(array)
    if path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=9, mtime=0)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; these are ordinary data files
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
