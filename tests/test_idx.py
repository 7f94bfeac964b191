from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from ds.idx import IdxFormatError, encode_idx, read_idx, read_mnist_pair, write_idx

N = 20


@pytest.fixture(scope="module")
def digits(sample_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first N images and labels of the bundled sample's test split."""
    images, labels = read_mnist_pair(
        sample_dir / "t10k-images-idx3-ubyte.gz", sample_dir / "t10k-labels-idx1-ubyte.gz"
    )
    return images[:N].copy(), labels[:N].copy()


def test_sample_files_read_with_expected_shapes(sample_dir: Path) -> None:
    images, labels = read_mnist_pair(
        sample_dir / "train-images-idx3-ubyte.gz", sample_dir / "train-labels-idx1-ubyte.gz"
    )
    assert images.shape == (8000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (8000,) and set(np.unique(labels)) == set(range(10))


@pytest.mark.parametrize("name", ["images.gz", "images", "gz-content-without-suffix", "raw-content-named.gz"])
def test_round_trip_gz_and_raw_decided_by_magic_bytes(tmp_path: Path, digits, name: str) -> None:
    images = digits[0]
    payload = encode_idx(images)
    if name in ("images.gz", "gz-content-without-suffix"):
        payload = gzip.compress(payload)
    path = tmp_path / name
    path.write_bytes(payload)
    np.testing.assert_array_equal(read_idx(path), images)


def test_write_idx_pair_round_trip_and_is_reproducible(tmp_path: Path, digits) -> None:
    images, labels = digits
    write_idx(tmp_path / "a-images.gz", images)
    write_idx(tmp_path / "a-labels.gz", labels)
    write_idx(tmp_path / "b-images.gz", images)
    got_images, got_labels = read_mnist_pair(tmp_path / "a-images.gz", tmp_path / "a-labels.gz")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert (tmp_path / "a-images.gz").read_bytes() == (tmp_path / "b-images.gz").read_bytes()


def _raises(path: Path, *fragments: str, reader=read_idx, args=None) -> None:
    with pytest.raises(IdxFormatError) as info:
        reader(*(args or (path,)))
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_file(tmp_path: Path, digits, compress: bool) -> None:
    payload = encode_idx(digits[0])[:-100]
    if compress:
        payload = gzip.compress(payload)
    path = tmp_path / "images"
    path.write_bytes(payload)
    _raises(path, "truncated", f"{N} x 28 x 28")


def test_trailing_bytes(tmp_path: Path, digits) -> None:
    path = tmp_path / "images"
    path.write_bytes(encode_idx(digits[0]) + b"\0" * 7)
    _raises(path, "7 trailing bytes")


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    _raises(path, "truncated", "header")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(b"")
    _raises(path, "too short")


def test_wrong_magic(tmp_path: Path, digits) -> None:
    path = tmp_path / "images"
    path.write_bytes(b"\x00\x00\x08\x02" + encode_idx(digits[0])[4:])
    _raises(path, "magic number is 0x00000802", "0x00000803")


def test_wrong_dtype_byte(tmp_path: Path, digits) -> None:
    path = tmp_path / "images"
    path.write_bytes(b"\x00\x00\x0d\x03" + encode_idx(digits[0])[4:])
    _raises(path, "data-type byte is 0x0d", "0x08")


def test_wrong_image_size(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(
        b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (32).to_bytes(4, "big") * 2 + bytes(2 * 32 * 32)
    )
    _raises(path, "(32, 32)", "28x28")


def test_mismatched_image_and_label_counts(tmp_path: Path, digits) -> None:
    images, labels = digits
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels[:-1])
    pair = (tmp_path / "images.gz", tmp_path / "labels.gz")
    _raises(pair[1], f"{N} images", f"{N - 1} labels", reader=read_mnist_pair, args=pair)
    _raises(pair[0], "do not match", reader=read_mnist_pair, args=pair)


def test_label_out_of_range(tmp_path: Path, digits) -> None:
    images, labels = digits
    labels = labels.copy()
    labels[3] = 12
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels)
    pair = (tmp_path / "images.gz", tmp_path / "labels.gz")
    _raises(pair[1], "outside 0..9", "12 at index 3", reader=read_mnist_pair, args=pair)


def test_swapped_images_and_labels(tmp_path: Path, digits) -> None:
    images, labels = digits
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels)
    pair = (tmp_path / "labels.gz", tmp_path / "images.gz")
    _raises(pair[0], "swapped", reader=read_mnist_pair, args=pair)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda gz: gz[:10] + b"garbage" * 20, id="garbled-body"),
        pytest.param(lambda gz: gz[: len(gz) // 2], id="truncated-gz"),
        pytest.param(lambda gz: gz[:-8] + bytes(8), id="bad-crc"),
    ],
)
def test_bad_gzip(tmp_path: Path, digits, damage) -> None:
    path = tmp_path / "images.gz"
    path.write_bytes(damage(gzip.compress(encode_idx(digits[0]))))
    _raises(path, "not a valid gzip stream")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "train-images-idx3-ubyte.gz"
    _raises(path, "does not exist")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    _raises(tmp_path, "cannot be read")


def test_error_is_a_value_error() -> None:
    assert issubclass(IdxFormatError, ValueError)
