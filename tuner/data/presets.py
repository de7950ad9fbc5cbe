"""Datasets for the search: exact Gaussian-mixture presets, 8x8 digits, CIFAR-10, image folders.

Notation (docs/architecture.md, METHODS.md): the variance-preserving process indexed by the
log-SNR ``logsnr`` (λ), ``x_λ = α x0 + σ ε`` with ``α² = sigmoid(λ)``, ``σ² = sigmoid(−λ)``.
Observed noisy data use the variance-exploding form ``y = x0 + s_n·η`` (``noise_sigma`` = s_n).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from models.analytic import GaussianMixture, bimodal, gaussian2d, ring8
from models.registry import Entry, Registry


class DataError(ValueError):
    """A data problem, reported in one line naming the option that fixes it."""


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------

TRAIN_SIZE = 20000  # low-dimensional presets
TEST_SIZE = 5000
REFERENCE_FRACTION = 0.05  # bimodal_biased: unbiased reference set, 5 % of the observed set
LOWDIM_NOISE_SIGMA = 0.5  # s_n of gaussian_noisy / mixture_noisy
DIGITS_NOISE_SIGMA = 0.2  # s_n of digits_noisy
KEEP_MINORITY = 0.2  # digits_biased / cifar10_biased keep 20 % of classes 5..9
DIGITS_REFERENCE_FRACTION = 0.1  # digits_biased reference: ~10 % of the observed size
CIFAR10_REFERENCE_FRACTION = 0.05  # cifar10_biased reference: 5 % (Kim et al. 2024)
FOLDER_TEST_FRACTION = 0.1
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CIFAR10_ROOT = "~/.cache/diffsearch/cifar10"
DIGITS_CACHE = "~/.cache/diffsearch/digits"  # the fixed digits split (load_digits_split)


@dataclass
class Dataset:
    """One dataset preset: what training sees, a clean held-out test set, and the truth if known.

    ``labels_reference`` (labels of ``reference``) is an addition to the architecture contract,
    set by the class-biased presets (``digits_biased``, ``cifar10_biased``).
    """

    name: str
    kind: str  # "lowdim" | "image"
    train: Tensor  # what training sees (biased / noisy where the preset says so)
    test: Tensor  # clean, unbiased held-out set for evaluation
    shape: tuple[int, ...]  # one example's shape
    reference: Tensor | None = None  # small unbiased reference set (biased presets)
    noise_sigma: float = 0.0  # s_n of the observed data (VE), 0 for clean data
    truth: GaussianMixture | None = None  # the clean, unbiased distribution (low-dim presets)
    observed: GaussianMixture | None = None  # training distribution before noise (biased presets)
    labels_train: Tensor | None = None
    labels_test: Tensor | None = None
    minority: int | tuple[int, ...] | None = None  # component / classes whose fraction is tracked
    labels_reference: Tensor | None = None


def _gen(seed: int, stream: int = 0) -> torch.Generator:
    """A CPU generator seeded from (seed, stream); streams keep parts of a preset independent."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + stream)


def _lowdim(name: str, seed: int) -> Dataset:
    g = _gen(seed)
    if name in ("ring8", "bimodal"):
        truth = ring8() if name == "ring8" else bimodal()
        train, test = truth.sample(TRAIN_SIZE, g), truth.sample(TEST_SIZE, g)
        return Dataset(name, "lowdim", train, test, (2,), truth=truth)
    if name == "bimodal_biased":
        # TIW setting (METHODS.md §3): observed 0.9/0.1, reference 0.5/0.5 of 5 % the size
        truth, observed = bimodal((0.5, 0.5)), bimodal((0.9, 0.1))
        train = observed.sample(TRAIN_SIZE, g)
        reference = truth.sample(round(REFERENCE_FRACTION * TRAIN_SIZE), g)
        test = truth.sample(TEST_SIZE, g)
        return Dataset(
            name,
            "lowdim",
            train,
            test,
            (2,),
            reference=reference,
            truth=truth,
            observed=observed,
            minority=1,
        )
    # ambient setting (METHODS.md §2): y = x0 + s_n·η, VE form
    truth = gaussian2d() if name == "gaussian_noisy" else bimodal()
    clean = truth.sample(TRAIN_SIZE, g)
    train = clean + LOWDIM_NOISE_SIGMA * torch.randn(clean.shape, generator=g)
    test = truth.sample(TEST_SIZE, g)
    return Dataset(name, "lowdim", train, test, (2,), noise_sigma=LOWDIM_NOISE_SIGMA, truth=truth)


def load_digits_split(
    cache_dir: str | os.PathLike | None = DIGITS_CACHE,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's 8x8 digits, fixed stratified 75/25 split (seed-independent).

    Returns (x_train, y_train, x_test, y_test): images (N, 1, 8, 8) float32 in [-1, 1]
    (x/8 − 1 of the 0..16 values) and int64 labels; 1347 train and 450 test examples.
    scikit-learn makes the split once and it is kept in ``cache_dir`` under scikit-learn's
    version, so that a later process (each trial worker) need not import scikit-learn, SciPy
    and pandas (1–2 s); an unreadable cache is made again, and ``cache_dir=None`` keeps none.
    """
    keys = ("x_train", "y_train", "x_test", "y_test")
    path = None
    if cache_dir is not None:
        try:
            sklearn_version = version("scikit-learn")
        except PackageNotFoundError:
            sklearn_version = "missing"
        path = Path(cache_dir).expanduser() / f"split-sklearn{sklearn_version}.pt"
        try:
            saved = torch.load(path, weights_only=True)
            return tuple(saved[k] for k in keys)  # type: ignore[return-value]
        except Exception:  # noqa: BLE001 - missing or damaged: make it again
            pass
    from sklearn import datasets, model_selection  # 1-2 s: only the first process makes the split

    bunch = datasets.load_digits()
    x_tr, x_te, y_tr, y_te = model_selection.train_test_split(
        bunch.data, bunch.target, test_size=0.25, random_state=0, stratify=bunch.target
    )

    def images(a: object) -> Tensor:
        return (torch.as_tensor(a, dtype=torch.float32) / 8.0 - 1.0).reshape(-1, 1, 8, 8)

    def labels(a: object) -> Tensor:
        return torch.as_tensor(a, dtype=torch.int64)

    split = (images(x_tr), labels(y_tr), images(x_te), labels(y_te))
    if path is not None:
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:  # written whole, then renamed: a concurrent reader never sees half a file
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(dict(zip(keys, split, strict=True)), tmp)
            tmp.replace(path)
        except OSError:  # a read-only home: no cache, nothing else changes
            tmp.unlink(missing_ok=True)
    return split


def _class_biased(
    name: str,
    split: tuple[Tensor, Tensor, Tensor, Tensor],
    seed: int,
    reference_fraction: float,
) -> Dataset:
    """Classes 0–4 all kept, classes 5–9 subsampled to 20 % (seeded), plus a class-uniform
    reference set of ``reference_fraction`` × the observed size (TIW-DSM's setting).

    The reference examples are drawn from the train examples left out of the observed set where a
    class has enough of them (classes 5–9) and otherwise from the whole class in the train split
    (classes 0–4, so those reference examples also appear in the observed set).
    """
    x_tr, y_tr, x_te, y_te = split
    g = _gen(seed, 1)
    observed_idx, left_idx = [], {}
    for c in range(10):
        idx = (y_tr == c).nonzero()[:, 0]
        idx = idx[torch.randperm(len(idx), generator=g)]
        keep = len(idx) if c < 5 else round(KEEP_MINORITY * len(idx))
        observed_idx.append(idx[:keep])
        left_idx[c] = (idx[keep:], idx)
    observed = torch.cat(observed_idx).sort().values
    per_class = max(1, round(reference_fraction * len(observed) / 10))
    ref_idx = []
    for c in range(10):
        left, whole = left_idx[c]
        pool = left if len(left) >= per_class else whole
        ref_idx.append(pool[torch.randperm(len(pool), generator=g)[:per_class]])
    reference = torch.cat(ref_idx)
    return Dataset(
        name,
        "image",
        x_tr[observed],
        x_te,
        tuple(x_tr.shape[1:]),
        reference=x_tr[reference],
        labels_train=y_tr[observed],
        labels_test=y_te,
        labels_reference=y_tr[reference],
        minority=(5, 6, 7, 8, 9),
    )


def _digits_biased(seed: int) -> Dataset:
    """digits with classes 5–9 cut to 20 %: with the fixed split that is ≈ 135 examples for each
    of classes 0–4 and ≈ 27 for each of 5–9, so each majority class is ≈ 16.7 % of the observed
    set and each minority class ≈ 3.3 % (class-uniform would be 10 %); the reference set is
    ≈ 10 % of the observed size (8 per class)."""
    return _class_biased("digits_biased", load_digits_split(), seed, DIGITS_REFERENCE_FRACTION)


def _digits(name: str, seed: int) -> Dataset:
    if name == "digits_biased":
        return _digits_biased(seed)
    x_tr, y_tr, x_te, y_te = load_digits_split()
    noise_sigma = 0.0
    if name == "digits_noisy":
        # ambient setting: y = x0 + s_n·η (METHODS.md §2)
        noise_sigma = DIGITS_NOISE_SIGMA
        x_tr = x_tr + noise_sigma * torch.randn(x_tr.shape, generator=_gen(seed, 2))
    return Dataset(
        name,
        "image",
        x_tr,
        x_te,
        (1, 8, 8),
        noise_sigma=noise_sigma,
        labels_train=y_tr,
        labels_test=y_te,
    )


def cifar10_path(root: str | None) -> Path:
    """The folder that holds (or will hold) cifar-10-batches-py: data.root or the default."""
    return Path(root or CIFAR10_ROOT).expanduser()


def _torchvision() -> Any:
    """torchvision.datasets (CIFAR10 and its download helper in .utils)."""
    import torchvision.datasets  # seconds to import: only CIFAR-10 needs it

    return torchvision.datasets


def cifar10_present(root: str | None) -> bool:
    """Every file torchvision reads is under data.root (whether they are intact is checked, by
    their md5, when they are loaded)."""
    CIFAR10 = _torchvision().CIFAR10
    folder = cifar10_path(root) / CIFAR10.base_folder
    names = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list]
    return all((folder / name).is_file() for name in [*names, CIFAR10.meta["filename"]])


def url_problem(url: str, timeout: float = 5.0) -> str | None:
    """None when the server of `url` answers a HEAD request within `timeout` seconds, else what
    went wrong, in a few words (the proxy variables are read at each call)."""
    try:
        opener = urllib.request.build_opener()
        opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError as err:
        return None if err.code == 405 else f"HTTP {err.code} {err.reason}"
    except (OSError, ValueError) as err:  # URLError, refused, timed out, a malformed proxy
        return f"{type(err).__name__}: {getattr(err, 'reason', err)}"
    return None


def _offline_hint(path: Path) -> str:
    return (
        f"offline, put cifar-10-batches-py under {path} or set data.root=PATH to a folder "
        "that holds it"
    )


def check_cifar10(root: str | None, download: bool, timeout: float = 5.0) -> None:
    """Raise a one-line DataError unless CIFAR-10 is under data.root, or data.download allows a
    download and its server answers within `timeout` seconds. Writes nothing."""
    CIFAR10 = _torchvision().CIFAR10
    path = cifar10_path(root)
    if cifar10_present(root):
        return
    if not download:
        raise DataError(
            f"CIFAR-10 not found under {path}; set data.root=PATH to a folder that holds "
            "cifar-10-batches-py, or data.download=true when online"
        )
    problem = url_problem(CIFAR10.url, timeout)
    if problem is not None:
        raise DataError(
            f"CIFAR-10 is not under {path} and cannot be downloaded ({problem} for "
            f"{CIFAR10.url}); {_offline_hint(path)}"
        )


def fetch_cifar10(root: str | None) -> None:
    """Download and extract CIFAR-10 under data.root unless it is there. A failed download
    leaves nothing it created: no archive, no half-extracted folder, no empty data.root."""
    tv = _torchvision()
    CIFAR10, download_and_extract_archive = tv.CIFAR10, tv.utils.download_and_extract_archive
    path = cifar10_path(root)
    if cifar10_present(root):
        return
    missing = [p for p in (path, *path.parents) if not p.exists()]
    archive, folder = path / CIFAR10.filename, path / CIFAR10.base_folder
    kept = {p for p in (archive, folder) if p.exists()}
    try:
        download_and_extract_archive(
            CIFAR10.url, str(path), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5
        )
    except (OSError, RuntimeError, tarfile.TarError) as err:
        for made in (archive, folder):
            if made not in kept and made.is_dir():
                shutil.rmtree(made, ignore_errors=True)
            elif made not in kept:
                made.unlink(missing_ok=True)
        for made in missing:  # innermost first; only the empty folders this call made
            with contextlib.suppress(OSError):
                made.rmdir()
        reason = " ".join(str(getattr(err, "reason", err)).split())[:200]
        raise DataError(
            f"CIFAR-10 could not be downloaded into {path} ({type(err).__name__}: {reason}); "
            f"{_offline_hint(path)}"
        ) from None


def _cifar10_split(root: str | None, download: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    path = cifar10_path(root)
    if not cifar10_present(root):
        check_cifar10(root, download)
        fetch_cifar10(root)
    try:
        CIFAR10 = _torchvision().CIFAR10
        splits = [CIFAR10(str(path), train=t, download=False) for t in (True, False)]
    except (RuntimeError, OSError) as err:  # a missing or corrupt file
        reason = " ".join(str(err).split())[:200]
        fix = "" if download else ", or data.download=true when online"
        raise DataError(
            f"CIFAR-10 could not be loaded from {path} ({type(err).__name__}: {reason}); "
            f"set data.root=PATH to a folder that holds an intact cifar-10-batches-py{fix}"
        ) from None

    def images(ds: object) -> Tensor:
        u8 = torch.from_numpy(ds.data).permute(0, 3, 1, 2)  # (N, 32, 32, 3) -> (N, 3, 32, 32)
        return u8.to(torch.float32) / 127.5 - 1.0

    def labels(ds: object) -> Tensor:
        return torch.as_tensor(ds.targets, dtype=torch.int64)

    train, test = splits
    return images(train), labels(train), images(test), labels(test)


def _cifar10(name: str, seed: int, root: str | None, download: bool) -> Dataset:
    split = _cifar10_split(root, download)
    if name == "cifar10_biased":
        return _class_biased(name, split, seed, CIFAR10_REFERENCE_FRACTION)
    x_tr, y_tr, x_te, y_te = split
    return Dataset(name, "image", x_tr, x_te, (3, 32, 32), labels_train=y_tr, labels_test=y_te)


def _load_image(file: Path, size: int) -> Tensor:
    try:
        with Image.open(file) as im:
            im = im.convert("RGB")
            w, h = im.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side))  # center crop
            im = im.resize((size, size), Image.Resampling.BICUBIC)
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except OSError as err:
        raise DataError(
            f"cannot read image {file} ({err}); remove it from the data folder"
        ) from None
    return data.reshape(size, size, 3).permute(2, 0, 1).to(torch.float32) / 127.5 - 1.0


def _folder(name: str, seed: int, size: int | None) -> Dataset:
    raw = name[len("folder:") :]
    folder = Path(raw).expanduser()
    if not raw or not folder.is_dir():
        raise DataError(
            f"data folder {raw or '(empty)'} does not exist; set data=folder:PATH to an existing "
            "folder of images"
        )
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if len(files) < 2:
        raise DataError(
            f"data folder {folder} holds {len(files)} images (need at least 2) with extensions "
            f"{', '.join(IMAGE_EXTENSIONS)} (any case, searched recursively)"
        )
    size = int(size or 32)
    if size < 1:
        raise DataError(f"data.size must be a positive image side; got {size}")
    x = torch.stack([_load_image(p, size) for p in files])
    perm = torch.randperm(len(files), generator=_gen(seed, 3))
    n_test = max(1, round(FOLDER_TEST_FRACTION * len(files)))
    test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:].sort().values
    return Dataset(name, "image", x[train_idx], x[test_idx], (3, size, size))


def preset_entry(name: str) -> Entry:
    """The registry entry of a data name (any folder:PATH is the folder preset)."""
    return DATASETS.entry(FOLDER if name.startswith("folder:") else name)


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    root: str | None = None,
    download: bool = False,
    size: int | None = None,
) -> Dataset:
    """Load a dataset preset.

    Args:
        name: one of DATASETS; ``folder:PATH`` loads every image under PATH.
        seed: seeds the random draws (samples of low-dim presets, noise, subsets, test split);
            the true distributions and the digits train/test split do not depend on it.
        root: folder holding ``cifar-10-batches-py`` (default ``~/.cache/diffsearch/cifar10``).
        download: let torchvision download CIFAR-10 into ``root``.
        size: image side for ``folder:PATH`` (default 32); other presets ignore it.

    Raises:
        DataError: one line naming the option that fixes the problem.
    """
    key = FOLDER if name.startswith("folder:") else name
    if key not in DATASETS or name == FOLDER:
        raise DataError(f"unknown data {name!r}; set data to one of {', '.join(DATASETS)}")
    return DATASETS[key](name, seed=seed, root=root, download=download, size=size)


# The presets by name, each with its kind ("lowdim" or "image"), what it needs to load, and
# whether natural-image flips augment it by default; "folder:PATH" stands for any folder.
FOLDER = "folder:PATH"
# `minority`: the preset tracks a minority component or classes (Dataset.minority is set), so
# its evaluations report eval/minority_* (tuner.evaluation.metrics.reported_metrics).
DATASETS: Registry[Callable[..., Dataset]] = Registry("data preset")
# `noisy`: the training data are observed with noise (Dataset.noise_sigma > 0); `reference`: the
# preset has a small unbiased reference set (Dataset.reference), which TIW needs.
for _name in ("ring8", "bimodal", "bimodal_biased", "gaussian_noisy", "mixture_noisy"):
    DATASETS.add(
        _name,
        lambda name, seed, **_: _lowdim(name, seed),
        kind="lowdim",
        minority=_name == "bimodal_biased",
        noisy=_name.endswith("_noisy"),
        reference=_name.endswith("_biased"),
    )
for _name in ("digits", "digits_biased", "digits_noisy"):
    DATASETS.add(
        _name,
        lambda name, seed, **_: _digits(name, seed),
        kind="image",
        minority=_name == "digits_biased",
        noisy=_name.endswith("_noisy"),
        reference=_name.endswith("_biased"),
    )
for _name in ("cifar10", "cifar10_biased"):
    DATASETS.add(
        _name,
        lambda name, seed, root, download, **_: _cifar10(name, seed, root, download),
        kind="image",
        download=True,
        flip=True,
        minority=_name == "cifar10_biased",
        reference=_name == "cifar10_biased",
    )
DATASETS.add(
    FOLDER, lambda name, seed, size, **_: _folder(name, seed, size), kind="image", flip=True
)
