"""What an MNIST-format dataset is: its files and their checksums, the
identity a run records, where it is downloaded from, and the errors about it.

No torch here, so that configs, studies and error messages load without it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"


class DatasetError(Exception):
    """Base class of the errors `load_mnist` raises about the dataset."""


class DatasetUnavailableError(DatasetError):
    """The dataset's files are missing and could not be downloaded or substituted."""


class DatasetIntegrityError(DatasetError, ValueError):
    """A dataset file is present but damaged or not the expected file."""


class SampleFallbackWarning(UserWarning):
    """The full dataset was unavailable and the bundled sample is used instead."""


@dataclass(frozen=True)
class IdxResource:
    """One dataset file: its canonical (.gz) name and decompressed SHA-256."""

    filename: str
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    """The four files that make up an MNIST-format dataset, by role."""

    name: str
    train_images: IdxResource
    train_labels: IdxResource
    test_images: IdxResource
    test_labels: IdxResource

    def resources(self) -> tuple[IdxResource, IdxResource, IdxResource, IdxResource]:
        """The four files in the fixed order used for hashing and caching."""
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


# Checksums from shared/data/README.md (decompressed content of the originals).
MNIST = DatasetSpec(
    name="mnist",
    train_images=IdxResource(
        "train-images-idx3-ubyte.gz", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    ),
    train_labels=IdxResource(
        "train-labels-idx1-ubyte.gz", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
    ),
    test_images=IdxResource(
        "t10k-images-idx3-ubyte.gz", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
    ),
    test_labels=IdxResource(
        "t10k-labels-idx1-ubyte.gz", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
    ),
)

# The bundled sample written by data/make_sample.py (see data/README.md).
MNIST_SAMPLE = DatasetSpec(
    name="mnist-sample",
    train_images=IdxResource(
        "train-images-idx3-ubyte.gz", "8c6f2cd40cd034e31900ff4b94355dc23ab7986389fb32f6ba9584d89603468b"
    ),
    train_labels=IdxResource(
        "train-labels-idx1-ubyte.gz", "ae3920aa1c6ecd3a949766883e177f965e084f8a43b9045feb8bd37755b8d974"
    ),
    test_images=IdxResource(
        "t10k-images-idx3-ubyte.gz", "8e3962864f6788b63422d69082deaa048cd81021e564088f999a410087dbc788"
    ),
    test_labels=IdxResource(
        "t10k-labels-idx1-ubyte.gz", "757aba95f2e6fbcca919dff38811db3c1e6c6bb432bb87defc707dcbcc183e3b"
    ),
)


@dataclass(frozen=True)
class DatasetIdentity:
    """Which data a run used. `sha256` hashes the four files' content hashes."""

    name: str
    train_size: int
    test_size: int
    sha256: str

    def short(self) -> str:
        return f"{self.name}({self.train_size}/{self.test_size}, sha256:{self.sha256[:8]})"

    def __str__(self) -> str:
        return self.short()


def content_hash(file_sha256s: Sequence[str]) -> str:
    """SHA-256 over the per-file hex digests (train-images, train-labels,
    t10k-images, t10k-labels order), each followed by a newline."""
    return hashlib.sha256("".join(f"{h}\n" for h in file_sha256s).encode("ascii")).hexdigest()
