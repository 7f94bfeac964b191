"""Load MNIST as normalised tensors: find, download or fall back, verify, cache.

`load_mnist` looks for the four MNIST IDX files in a data directory, downloads
missing ones from mirrors, and otherwise falls back to the small sample bundled
in data/sample/ (loudly). Every file is verified by the SHA-256 of its
decompressed content. Parsed arrays are cached in process memory (a sweep loads
once) and, optionally, on disk as .npy files (later processes skip gunzip and
parsing). A disk entry records the SHA-256 of each array's bytes when it is
written and is checked against them (and the labels against 0..9) when read:
an altered entry is rebuilt from the files, never used.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ds.datasets import (
    DEFAULT_MIRRORS,
    MNIST,
    MNIST_SAMPLE,
    SAMPLE_DIR,
    DatasetError,
    DatasetIdentity,
    DatasetIntegrityError,
    DatasetSpec,
    DatasetUnavailableError,
    IdxResource,
    SampleFallbackWarning,
    content_hash,
)
from ds.download import DownloadError, any_reachable, fetch_verified
from ds.idx import IdxFormatError, check_mnist_pair, parse_idx, read_idx_bytes

if TYPE_CHECKING:
    import torch  # imported where tensors are made: load_arrays needs none

logger = logging.getLogger(__name__)

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
_SCALE = 1.0 / (255.0 * MNIST_STD)
_SHIFT = -MNIST_MEAN / MNIST_STD
PIXELS = 28 * 28

_KNOWN_FILES = {r.sha256: (s.name, r.filename) for s in (MNIST, MNIST_SAMPLE) for r in s.resources()}


@dataclass(frozen=True)
class MnistArrays:
    """Verified, parsed dataset as read-only uint8 arrays (images [N, 784])."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    identity: DatasetIdentity


@dataclass
class MnistData:
    """Training-ready tensors, labels int64 [N].

    The training images stay uint8 (a quarter of the memory, and a cached load
    only maps them): `iterate_batches` normalises each batch as it is drawn.
    The test images are normalised once, for whole-split evaluation.
    """

    arrays: MnistArrays  # the verified uint8 source, shared with the tensors
    train_images: torch.Tensor  # uint8 [N, 784]
    train_y: torch.Tensor
    test_x: torch.Tensor  # float32 [N, 784], normalised
    test_y: torch.Tensor
    identity: DatasetIdentity


def load_mnist(
    data_dir: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None, **options: Any
) -> MnistData:
    """Find, verify, parse and cache MNIST; return it as training-ready tensors. `options`:
    download=True, mirrors=DEFAULT_MIRRORS, timeout_s=10.0, sample_fallback=True, spec=MNIST,
    sample_dir=SAMPLE_DIR (`_entry`).

    Resolution: (0) `data_dir` is the bundled sample's folder: the sample is
    loaded; (1) the four files of `spec` in `data_dir`, named as in the spec
    or without ".gz"; (2) missing files are downloaded into `data_dir` when
    `download` is on; (3) otherwise the bundled sample is used with a
    `SampleFallbackWarning`, or `DatasetUnavailableError` is raised when
    `sample_fallback` is off. A present file that is damaged or whose
    decompressed SHA-256 is wrong raises `DatasetIntegrityError`. The sample
    (in `sample_dir`, the repository's data/sample/ unless a caller keeps one
    elsewhere) is looked for like any dataset: a file missing from it, chosen
    or fallen back to, raises `DatasetUnavailableError` naming the file. Nothing is
    written into `data_dir` except downloads of missing files, nor into
    `cache_dir` (if given) except cache entries.

    The result is cached in this process, keyed by the files' paths, sizes and
    mtimes: calls on the same unchanged files return the same `MnistData`, so a
    sweep's runs share one copy. Treat its tensors as read-only.
    """
    entry = _entry(data_dir, cache_dir, **options)
    with _LOCK:
        if entry.data is None:
            a = entry.arrays
            entry.data = MnistData(
                arrays=a,
                train_images=_tensor(a.train_x),
                train_y=_labels_tensor(a.train_y),
                test_x=normalise_images(a.test_x),
                test_y=_labels_tensor(a.test_y),
                identity=a.identity,
            )
        return entry.data


def load_arrays(
    data_dir: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None, **options: Any
) -> MnistArrays:
    """What `load_mnist` finds, verifies and caches, as numpy arrays with the dataset's identity,
    without importing torch: a sweep checks its data before its trials train, and trains none."""
    return _entry(data_dir, cache_dir, **options).arrays


def data_options(cfg: Any) -> dict[str, Any]:
    """`load_mnist`'s and `load_arrays`' arguments from a run's config (paths.*, data.*)."""
    return {
        "data_dir": Path(cfg.paths.data),
        "cache_dir": Path(cfg.paths.cache),
        "download": cfg.data.download,
        "mirrors": list(cfg.data.mirrors),
        "timeout_s": cfg.data.timeout_s,
        "sample_fallback": cfg.data.sample_fallback,
    }


def _entry(
    data_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    mirrors: Sequence[str] = DEFAULT_MIRRORS,
    timeout_s: float = 10.0,
    sample_fallback: bool = True,
    spec: DatasetSpec = MNIST,
    sample_dir: str | os.PathLike[str] = SAMPLE_DIR,
) -> _CacheEntry:
    sample = Path(sample_dir).expanduser().resolve()
    if spec is MNIST and Path(data_dir).expanduser().resolve() == sample:
        spec = MNIST_SAMPLE  # paths.data=data/sample: the bundled sample, chosen, not fallen back to
    return _load_entry(data_dir, cache_dir, download, mirrors, timeout_s, sample_fallback, spec, sample)


def clear_memory_cache() -> None:
    """Forget every dataset cached, and every fallback taken, in this process."""
    with _LOCK:
        _MEMORY_CACHE.clear()
        _FALLBACKS.clear()


def normalise_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images [..., 784] -> new float32 tensor, (x / 255 - 0.1307) / 0.3081."""
    import torch

    source = _tensor(images) if isinstance(images, np.ndarray) else images
    if source.dtype != torch.uint8:
        raise ValueError(f"images have dtype {source.dtype}; expected uint8 pixel values 0..255.")
    # (x / 255 - mean) / std folded into shift + scale * x: one pass over the
    # data that also converts to float32, within 2e-7 of the literal formula.
    return torch.add(_shift_tensor(), source, alpha=_SCALE)


@functools.cache
def _shift_tensor() -> torch.Tensor:
    import torch

    return torch.tensor(_SHIFT, dtype=torch.float32)


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing the array's memory; the dataset's arrays are never written."""
    import torch

    with warnings.catch_warnings():
        # Cached arrays are read-only (memory-mapped); torch warns about that.
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def iterate_batches(
    images: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled, normalised mini-batches of uint8 `images`.

    Every index appears exactly once, the last batch may be smaller; the order
    comes from `generator`, so a seeded generator repeats the same epochs.
    """
    import torch

    x = images
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size is {batch_size!r}; expected a positive integer.")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}; expected one label per example.")
    # Drawn on the CPU (the generator's device), so every device sees the same
    # order; then one transfer per epoch where the data lives elsewhere.
    order = torch.randperm(len(x), generator=generator).to(x.device)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        # index_select copies whole rows; x[index] is ~2.5x slower here.
        yield normalise_images(x.index_select(0, index)), y.index_select(0, index)


VALIDATION_EVERY = 10


def validation_split(n_train: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held out): the training indices a run trains on and the ones it validates on.

    Every 10th training digit, indices 9, 19, 29, ..., is held out: a fixed
    rule, the same for every seed, run and torch version, and a stratified
    tenth of the bundled sample, whose digits are in class order.
    """
    import torch

    index = torch.arange(n_train)
    held_out = index % VALIDATION_EVERY == VALIDATION_EVERY - 1
    return index[~held_out], index[held_out]


# --- locating the files -----------------------------------------------------

# (data_dir, dataset name) -> why this process fell back to the sample.
_FALLBACKS: dict[tuple[str, str], str] = {}


def _resolve_files(
    data_dir: Path,
    spec: DatasetSpec,
    download: bool,
    mirrors: Sequence[str],
    timeout_s: float,
    sample_fallback: bool,
    sample_dir: Path,
) -> tuple[list[Path], DatasetSpec]:
    if data_dir.exists() and not data_dir.is_dir():
        raise DatasetError(
            f"paths.data {data_dir} exists but is not a directory; expected a directory "
            "holding the four MNIST IDX files. Point paths.data (or the DS_DATA_DIR "
            "environment variable) at a directory."
        )
    found = [_find(data_dir, r) for r in spec.resources()]
    missing = [r for r, p in zip(spec.resources(), found, strict=False) if p is None]
    if not missing:
        return [p for p in found if p is not None], spec
    if data_dir.resolve() == sample_dir:
        # Neither downloaded into the repository's sample (mirrors hold the
        # full set) nor replaced by itself.
        raise DatasetUnavailableError(f"paths.data={data_dir}: {_incomplete(sample_dir, missing)}")

    fell_back_before = _FALLBACKS.get((str(data_dir), spec.name))
    if fell_back_before is not None:
        # Once per process is enough: a sweep would otherwise retry every
        # mirror (and wait out their timeouts) before each trial.
        logger.info("Using the bundled sample again, as warned when this process first looked for the data")
        return _sample_files(sample_dir, fell_back_before), MNIST_SAMPLE

    if download and not any_reachable(mirrors):
        reason = "offline: no mirror could be reached"
    elif download:
        try:
            for i, resource in enumerate(spec.resources()):
                if found[i] is None:
                    found[i] = fetch_verified(
                        resource.filename, resource.sha256, data_dir, mirrors, timeout_s
                    )
            return [p for p in found if p is not None], spec
        except (DownloadError, OSError) as exc:
            reason = f"downloading failed: {exc}"
    else:
        reason = "downloading is disabled"

    names = ", ".join(r.filename for r in missing) if len(missing) < len(found) else "all four files"
    problem = (
        f"The {spec.name} dataset was not found in paths.data={data_dir} (missing: {names}) "
        f"and was not downloaded ({reason})."
    )
    how_to = (
        "For the full set, point paths.data (or DS_DATA_DIR) at a directory holding the four MNIST "
        "IDX files, or run with network access and data.download=true."
    )
    if not sample_fallback:
        raise DatasetUnavailableError(f"{problem} The sample fallback is disabled. {how_to}")
    sample_files = _sample_files(sample_dir, problem)  # checked before saying it is used
    message = (
        "FALLING BACK to the bundled 10,000-digit sample (8,000 train / 2,000 test): results are NOT "
        f"comparable with full-MNIST runs. {problem} {how_to}"
    )
    # One short line where a run says it (every run offline says it); the whole of it in the run's
    # log file and in the warning a library caller gets.
    logger.warning(
        "FALLING BACK to the bundled 10,000-digit sample: results are NOT comparable with full-MNIST runs "
        "(not in paths.data, %s; docs/data.md says how to get the full set)",
        reason.split(":")[0],
    )
    logger.debug(message)
    warnings.warn(message, SampleFallbackWarning, stacklevel=4)
    _FALLBACKS[(str(data_dir), spec.name)] = problem
    return sample_files, MNIST_SAMPLE


def _sample_files(sample_dir: Path, problem: str) -> list[Path]:
    """The bundled sample's four files, found like any dataset's, to fall back
    to; DatasetUnavailableError after `problem` when one is missing."""
    found = [_find(sample_dir, r) for r in MNIST_SAMPLE.resources()]
    missing = [r for r, p in zip(MNIST_SAMPLE.resources(), found, strict=False) if p is None]
    if missing:
        incomplete = _incomplete(sample_dir, missing)
        raise DatasetUnavailableError(
            f"{problem} Falling back to the bundled sample failed too: {incomplete}"
        )
    return [p for p in found if p is not None]


def _incomplete(sample_dir: Path, missing: Sequence[IdxResource]) -> str:
    """Which of the sample's files are missing (a dangling symlink named as one), and how to restore them."""
    names = []
    for resource in missing:
        path = sample_dir / resource.filename
        dangling = f" (a symlink to {os.readlink(path)}, which does not exist)" if path.is_symlink() else ""
        names.append(resource.filename + dangling)
    return (
        f"the bundled sample in {sample_dir} is missing {', '.join(names)}. Restore it from the "
        "repository (git checkout -- data/sample; data/README.md says how it was made), or point "
        "paths.data at a directory holding the four MNIST files."
    )


def _find(data_dir: Path, resource: IdxResource) -> Path | None:
    names = [resource.filename]
    if resource.filename.endswith(".gz"):
        names.append(resource.filename.removesuffix(".gz"))
    for name in names:
        candidate = data_dir / name
        if candidate.exists():
            return candidate
    return None


# --- verifying, parsing and caching -----------------------------------------


@dataclass
class _CacheEntry:
    arrays: MnistArrays
    data: MnistData | None = None


_LOCK = threading.Lock()
_MEMORY_CACHE: dict[tuple, _CacheEntry] = {}
_MEMORY_CACHE_LIMIT = 4
_DISK_FORMAT = 2  # 2: meta.json records each array's SHA-256


def _load_entry(
    data_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None,
    download: bool,
    mirrors: Sequence[str],
    timeout_s: float,
    sample_fallback: bool,
    spec: DatasetSpec,
    sample_dir: Path,
) -> _CacheEntry:
    paths, used_spec = _resolve_files(
        Path(data_dir).expanduser(), spec, download, mirrors, timeout_s, sample_fallback, sample_dir
    )
    # The key pins the files by path, size and mtime: if none changed since
    # they were verified, the cached arrays are still what those files hold.
    sources = []
    for path in paths:
        st = path.stat()
        sources.append((str(path.resolve()), st.st_size, st.st_mtime_ns))
    key = (used_spec, tuple(sources))
    with _LOCK:
        entry = _MEMORY_CACHE.get(key)
        if entry is not None:
            return entry
        disk_key = _disk_key(used_spec, sources)
        disk_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        arrays = _read_disk_cache(disk_dir, used_spec, disk_key) if disk_dir is not None else None
        if arrays is None:
            arrays = _parse_and_verify(paths, used_spec)
            if disk_dir is not None:
                _write_disk_cache(disk_dir, used_spec, disk_key, arrays)
        if len(_MEMORY_CACHE) >= _MEMORY_CACHE_LIMIT:
            _MEMORY_CACHE.pop(next(iter(_MEMORY_CACHE)))
        entry = _MEMORY_CACHE[key] = _CacheEntry(arrays)
        return entry


def _parse_and_verify(paths: list[Path], spec: DatasetSpec) -> MnistArrays:
    parsed = []
    digests = []
    for path, resource in zip(paths, spec.resources(), strict=False):
        try:
            raw = read_idx_bytes(path)
        except IdxFormatError as exc:
            raise DatasetIntegrityError(
                f"{exc} (This is the {spec.name} file {resource.filename}: delete it and "
                "re-run with download enabled, or replace it with the original file.)"
            ) from exc
        actual = hashlib.sha256(raw).hexdigest()
        if actual != resource.sha256:
            known = _KNOWN_FILES.get(actual)
            advice = (
                f"It is the {known[0]} file {known[1]}, not the {spec.name} one: point "
                f"paths.data at a directory holding the {spec.name} files instead."
                if known
                else "The file is damaged, truncated or from a different dataset: delete "
                "it and re-run with download enabled, or replace it with the original file."
            )
            raise DatasetIntegrityError(
                f"{path} does not hold the expected {spec.name} data: the SHA-256 of its "
                f"decompressed content is {actual}, expected {resource.sha256}. {advice}"
            )
        parsed.append(parse_idx(raw, path))
        digests.append(actual)
    train_x, train_y, test_x, test_y = parsed
    check_mnist_pair(train_x, train_y, paths[0], paths[1])
    check_mnist_pair(test_x, test_y, paths[2], paths[3])
    identity = DatasetIdentity(spec.name, len(train_y), len(test_y), content_hash(digests))
    return _freeze(train_x.reshape(-1, PIXELS), train_y, test_x.reshape(-1, PIXELS), test_y, identity)


def _freeze(train_x, train_y, test_x, test_y, identity: DatasetIdentity) -> MnistArrays:
    for a in (train_x, train_y, test_x, test_y):
        if a.flags.writeable:
            a.flags.writeable = False
    return MnistArrays(train_x, train_y, test_x, test_y, identity)


def _disk_key(spec: DatasetSpec, sources: list[tuple[str, int, int]]) -> str:
    blob = json.dumps([_DISK_FORMAT, asdict(spec), sources], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _read_disk_cache(cache_dir: Path, spec: DatasetSpec, key: str) -> MnistArrays | None:
    entry = cache_dir / f"{spec.name}-{key}"
    if not entry.exists():
        return None
    try:
        if not entry.is_dir():
            raise ValueError("it is not a directory")
        meta = json.loads((entry / "meta.json").read_text())
        if meta["format"] != _DISK_FORMAT or meta["key"] != key:
            raise ValueError("format or key does not match")
        identity = DatasetIdentity(**meta["identity"])
        # Only verified files are cached, so the identity follows from the spec.
        if identity.name != spec.name or identity.sha256 != content_hash(
            [r.sha256 for r in spec.resources()]
        ):
            raise ValueError(f"its identity {identity} does not belong to {spec.name}")
        # Memory-mapped read-only: no copy, pages come straight from the OS
        # page cache. Safe because entries are never modified in place, only
        # replaced by renaming a new directory over them.
        arrays = {
            name: np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in _ARRAY_SHAPES
        }
        sizes = {"train": identity.train_size, "test": identity.test_size}
        for name, shape in _ARRAY_SHAPES.items():
            want = (sizes[name.split("_")[0]], *shape)
            got = arrays[name]
            if got.dtype != np.uint8 or got.shape != want:
                raise ValueError(f"{name}.npy is {got.dtype} {got.shape}, expected uint8 {want}")
        _check_contents(arrays, meta["sha256"])
        return _freeze(**arrays, identity=identity)
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        logger.warning("ignoring cache entry %s (%s); rebuilding it", entry, exc)
        return None


_ARRAY_SHAPES = {"train_x": (PIXELS,), "train_y": (), "test_x": (PIXELS,), "test_y": ()}
N_CLASSES = 10


def _array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's bytes in memory order (hashlib's SHA-256 uses the CPU's SHA
    instructions)."""
    return hashlib.sha256(np.ascontiguousarray(array).data.cast("B")).hexdigest()


def _check_contents(arrays: dict[str, np.ndarray], recorded: dict[str, str]) -> None:
    """Raise ValueError unless every array still has the bytes it was written with.

    The hashes catch any edit of an .npy file (a shifted label, a changed
    pixel); the label range is checked too, so that an entry rewritten with
    consistent hashes still cannot feed the model a label it has no class for.
    """
    for name, array in arrays.items():
        actual = _array_sha256(array)
        if actual != recorded[name]:
            raise ValueError(
                f"{name}.npy was altered since it was written: its SHA-256 is {actual[:16]}..., "
                f"recorded {recorded[name][:16]}..."
            )
    for name in ("train_y", "test_y"):
        top = int(arrays[name].max(initial=0))
        if top >= N_CLASSES:
            raise ValueError(f"{name}.npy holds label {top}, expected labels 0..{N_CLASSES - 1}")


def _write_disk_cache(cache_dir: Path, spec: DatasetSpec, key: str, arrays: MnistArrays) -> None:
    entry = cache_dir / f"{spec.name}-{key}"
    tmp: Path | None = None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{entry.name}.", suffix=".tmp"))
        for name in _ARRAY_SHAPES:
            np.save(tmp / f"{name}.npy", getattr(arrays, name), allow_pickle=False)
        meta = {
            "format": _DISK_FORMAT,
            "key": key,
            "identity": asdict(arrays.identity),
            "sha256": {name: _array_sha256(getattr(arrays, name)) for name in _ARRAY_SHAPES},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700; a shared cache is for every user
        # A directory cannot be renamed over a non-empty one: drop the stale or
        # corrupt entry first. If another process wins the race, keep its entry.
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
        shutil.rmtree(entry, ignore_errors=True)
        try:
            os.replace(tmp, entry)
        except OSError:
            if not entry.is_dir():
                raise
    except OSError as exc:
        logger.warning("could not write cache entry %s (%s); continuing without it", entry, exc)
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _labels_tensor(labels: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(labels.astype(np.int64))
