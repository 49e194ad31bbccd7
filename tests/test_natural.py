"""The natural-vs-random experiment on tiny configurations: data variants, errors, init, resuming
after an interruption, shards and their merge, and the command line (on fake MNIST files)."""

from __future__ import annotations

import json
import os
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import brute_force_entries, random_indices

from tflib import mnist
from tflib.data import completion_data, load_digits, one_vs_all, quantize
from tflib.experiments import NaturalConfig, NaturalResult, natural_config, run_natural
from tflib.experiments.__main__ import main
from tflib.experiments.natural import (
    from_records,
    load_task,
    mean_errors,
    records,
    variant_data,
)
from tflib.network import CPNetwork
from tflib.train import fit

TINY = dict(ranks=(1, 2, 3), epochs=3, seeds=(0,), track_every=1)


def tiny_config(**overrides) -> NaturalConfig:
    return natural_config("book", **{**TINY, **overrides})


def run_tiny(out_dir=None, **options) -> NaturalResult:
    options = {"device": "cpu", "dtype": torch.float64, "progress": False, **options}
    return run_natural(tiny_config(), out_dir=out_dir, **options)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny experiment, run once for the module: (result, its out_dir)."""
    out_dir = tmp_path_factory.mktemp("natural")
    return run_tiny(out_dir), out_dir


# --- the data and its variants --------------------------------------------------------------------


def test_digits_task_is_a_fixed_split_of_binarized_one_vs_all_digits():
    config = natural_config("book")
    (train_x, train_y), (test_x, test_y) = load_task("digits", config)
    assert train_x.shape == (1200, 8, 8) and test_x.shape == (597, 8, 8)
    assert set(torch.cat([train_x, test_x]).unique().tolist()) == {0, 1}
    images, labels = load_digits()
    assert sorted(torch.cat([train_y, test_y]).tolist()) == sorted(
        (2.0 * (labels == 6)).tolist()
    ), "every digit once, 6 as 2 and the rest as 0"
    again = load_task("digits", config)
    assert torch.equal(again[0][0], train_x) and torch.equal(again[1][1], test_y), "fixed split"


def test_natural_variant_is_the_data_itself():
    features = torch.randint(2, (50, 4, 4), generator=torch.Generator().manual_seed(0))
    targets = one_vs_all(torch.arange(50) % 10)
    task = variant_data(features, targets, "natural", seed=1)
    assert torch.equal(task.indices, features.reshape(50, 16).to(torch.uint8))
    assert torch.equal(task.targets, targets)


def test_random_labels_keep_the_images_and_permute_the_labels():
    features = torch.randint(2, (200, 16), generator=torch.Generator().manual_seed(0))
    targets = one_vs_all(torch.arange(200) % 10)
    task = variant_data(features, targets, "random_labels", seed=1)
    assert torch.equal(task.indices, features.to(torch.uint8))
    assert sorted(task.targets.tolist()) == sorted(targets.tolist()), "a permutation"
    assert not torch.equal(task.targets, targets)


def test_random_images_keep_the_labels_and_replace_the_images_by_noise():
    features = torch.zeros(400, 64, dtype=torch.uint8)
    targets = one_vs_all(torch.arange(400) % 10)
    task = variant_data(features, targets, "random_images", seed=1)
    assert torch.equal(task.targets, targets)
    assert 0.45 < task.indices.float().mean() < 0.55
    other = variant_data(features, targets, "random_images", seed=2)
    assert not torch.equal(other.indices, task.indices), "seeded per run"


# --- the mean error and the init ----------------------------------------------------------------


def test_mean_errors_match_float64_brute_force_with_the_test_cap():
    shape, ranks = (2,) * 6, (1, 2, 3)
    model = CPNetwork(shape, ranks, 0.8, 0.5, seed=3, dtype=torch.float64)
    indices = random_indices(shape, 40, seed=3)
    task = completion_data(indices, 2.0 * (torch.arange(40) % 3 == 0), 2)
    task = task._replace(targets=task.targets.double())
    columns = np.cumsum((0, *ranks))
    for g in range(3):
        factors = [f[:, columns[g] : columns[g + 1]].detach() for f in model.factors]
        outputs = brute_force_entries(factors, indices)
        squared = (outputs - task.targets.numpy()) ** 2
        plain, capped = mean_errors(model, task, 2.0), mean_errors(model, task, 2.0, cap=0.5)
        assert plain[g].item() == pytest.approx(squared.mean() / 4, rel=1e-12)
        assert capped[g].item() == pytest.approx(np.minimum(squared, 0.5).mean() / 4, rel=1e-12)
        assert (squared > 0.5).any(), "the cap must matter in this test"


@pytest.mark.parametrize("normalize", [True, False])
def test_untrained_output_is_about_one_with_normalize_init_and_about_r_without(normalize):
    result = run_natural(
        tiny_config(epochs=0, ranks=(1, 5, 15), normalize_init=normalize),
        device="cpu",
        progress=False,
    )
    history = result.runs[("digits", "natural", 0)]
    (_, y), _ = load_task("digits", result.config)
    positive = float((y == 2).double().mean())
    for rank, error in zip((1, 5, 15), history["train"][0]):
        c = 1.0 if normalize else rank  # the output every input gets, within a few percent
        expected = ((1 - positive) * c**2 + positive * (c - 2) ** 2) / 4
        assert error == pytest.approx(expected, rel=0.1)


def test_ranks_side_by_side_train_as_separate_runs_under_adam():
    shape, ranks = (2,) * 12, (1, 3)
    indices = random_indices(shape, 90, seed=4)
    targets = 2.0 * (indices[:, 0] * indices[:, 5]).double()
    options = dict(steps=40, optimizer="adam", lr=1e-2, batch_size=32, seed=4, progress=False)
    together = CPNetwork(shape, ranks, 1e-2, 1.0, seed=4, dtype=torch.float64)
    start = together.weight.detach().clone()
    fit(together, indices, targets, **options)
    for columns in (slice(0, 1), slice(1, 4)):
        alone = CPNetwork(shape, columns.stop - columns.start, 0.0, dtype=torch.float64)
        with torch.no_grad():
            alone.weight.copy_(start[:, columns])
        fit(alone, indices, targets, **options)
        torch.testing.assert_close(alone.weight, together.weight[:, columns], rtol=1e-9, atol=0)


# --- run_natural ---------------------------------------------------------------------------------


def test_run_natural_records_train_and_test_errors_of_every_rank(tiny):
    result, _ = tiny
    assert sorted(result.runs) == [("digits", v, 0) for v in sorted(result.config.variants)]
    for history in result.runs.values():
        assert history.status == "budget"
        assert history.steps == [0, 12, 24, 36]  # 1,200 digits in batches of 100: 12 per epoch
        assert history["train"].shape == history["test"].shape == (4, 3)
        assert np.all(history["train"][-1] < history["train"][0]), "training lowers the error"


def test_variance_is_computed_from_the_labels(tiny):
    result, _ = tiny
    images, labels = load_digits()
    order = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
    positive = (labels[order] == 6).double()
    for split, part in (("train", positive[:1200]), ("test", positive[1200:])):
        p = float(part.mean())
        assert result.variance("digits", split) == pytest.approx(p * (1 - p), rel=1e-6)
    assert result.variance("digits") == pytest.approx(0.0893, abs=5e-4)


def test_final_errors_are_those_of_the_final_factors(tiny):
    result, out_dir = tiny
    state = torch.load(out_dir / "digits_random_labels_seed0.pt", weights_only=True)["model"]
    model = CPNetwork((2,) * 64, (1, 2, 3), 0.0, dtype=torch.float64)
    model.load_state_dict(state)
    (train_x, train_y), (test_x, test_y) = load_task("digits", result.config)
    train = variant_data(train_x, train_y, "random_labels", 0, dtype=torch.float64)
    test = variant_data(test_x, test_y, "random_labels", 1, dtype=torch.float64)
    for task, split, cap in ((train, "train", None), (test, "test", 4.0)):
        factors = [f.detach()[:, 1:3] for f in model.factors]  # the rank-2 model
        squared = (brute_force_entries(factors, task.indices) - task.targets.numpy()) ** 2
        expected = (squared if cap is None else np.minimum(squared, cap)).mean() / 4
        assert result.final_errors("digits", "random_labels", split)[0, 1] == pytest.approx(
            expected, rel=1e-9
        )


def test_results_json_round_trips_through_load(tiny):
    result, out_dir = tiny
    assert NaturalResult.load(out_dir / "results.json") == result


def test_run_natural_again_returns_the_same_result_without_training(tiny):
    result, out_dir = tiny
    checkpoints = sorted(out_dir.glob("*.pt"))
    assert len(checkpoints) == 3
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    assert run_tiny(out_dir) == result
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps


@pytest.fixture
def sigint_guard():
    """Make a SIGINT that fit fails to catch fail the test instead of stopping pytest."""

    def raising(signum, frame):
        raise RuntimeError("SIGINT reached the test: fit did not catch it")

    previous = signal.signal(signal.SIGINT, raising)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("at_call", [5, 50])  # during the first run, during the second
def test_an_interrupted_experiment_resumes_to_the_uninterrupted_result(
    tiny, tmp_path, monkeypatch, sigint_guard, at_call
):
    expected, _ = tiny
    calls = {"n": 0}
    original = CPNetwork.loss_and_gradients

    def interrupting(self, indices, targets):
        calls["n"] += 1
        if calls["n"] == at_call:
            os.kill(
                os.getpid(), signal.SIGINT
            )  # Ctrl-C (or a cluster's signal before a time limit)
        return original(self, indices, targets)

    monkeypatch.setattr(CPNetwork, "loss_and_gradients", interrupting)
    first = run_tiny(tmp_path)
    monkeypatch.setattr(CPNetwork, "loss_and_gradients", original)
    stopped = [key for key, history in first.runs.items() if history.status == "interrupted"]
    assert len(stopped) == 1 and len(first.runs) == 1 + at_call // 37
    finished = NaturalResult.load(tmp_path / "results.json").runs if at_call > 37 else {}
    assert list(finished) == list(first.runs)[:-1], "the finished runs are saved"
    assert (tmp_path / f"{stopped[0][0]}_{stopped[0][1]}_seed0.pt").exists(), "partial run kept"
    assert run_tiny(tmp_path) == expected


def test_shards_split_the_runs_and_merge_to_the_whole(tiny, tmp_path):
    expected, _ = tiny
    parts = [run_tiny(tmp_path, shard=(k, 2)) for k in range(2)]
    assert [len(p.runs) for p in parts] == [2, 1]
    assert not parts[0].runs.keys() & parts[1].runs.keys()
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "results-shard0of2.json",
        "results-shard1of2.json",
    ]
    loaded = [NaturalResult.load(tmp_path / f"results-shard{k}of2.json") for k in range(2)]
    assert NaturalResult.merge(loaded) == expected


def test_merge_refuses_overlapping_shards(tiny):
    result, _ = tiny
    with pytest.raises(ValueError, match="appear in more than one part"):
        NaturalResult.merge([result, result])


@pytest.mark.parametrize(
    "overrides, message",
    [({"variants": ("natural", "shuffled")}, "shuffled"), ({"datasets": ("cifar",)}, "cifar")],
)
def test_run_natural_rejects_unknown_variants_and_data_sets(overrides, message):
    with pytest.raises(ValueError, match=f"unknown.*{message}"):
        run_natural(tiny_config(**overrides), device="cpu", progress=False)


def test_run_natural_rejects_a_bad_shard():
    with pytest.raises(ValueError, match="shard must be"):
        run_natural(tiny_config(), device="cpu", progress=False, shard=(2, 2))


def test_paper_config_is_the_papers_setting():
    config = natural_config("paper")
    assert config.datasets == ("mnist", "fashion_mnist") and config.ranks == tuple(range(1, 16))
    assert (config.positive, config.value, config.test_cap) == (6, 2.0, 4.0)
    assert (config.init_mean, config.init_std, config.normalize_init) == (1.0, 1e-3, False)
    assert (config.optimizer, config.lr, config.batch_size) == ("adam", 5e-4, 5000)
    assert (config.epochs, config.loss_tol) == (10_000, 1e-8)
    assert config.variants == ("natural", "random_labels", "random_images")


def test_records_keep_the_first_and_last_errors_and_read_back(tiny):
    result, _ = tiny
    entry = {"config": result.fingerprint(), "runs": records(result, points=2)}
    entry = json.loads(json.dumps(entry))  # as stored
    back = from_records(entry)
    assert back.config == result.config and back.settings == result.settings
    assert back.runs.keys() == result.runs.keys()
    for key, history in back.runs.items():
        whole = result.runs[key]
        assert history.steps == [whole.steps[0], whole.steps[-1]]
        assert history.status == whole.status
        for split in ("train", "test", "loss"):
            np.testing.assert_allclose(history[split], whole[split][[0, -1]], rtol=5e-4)
    for split in ("train", "test"):
        assert back.variance("digits", split) == pytest.approx(
            result.variance("digits", split), 5e-4
        )
        np.testing.assert_allclose(
            back.final_errors("digits", "natural", split),
            result.final_errors("digits", "natural", split),
            rtol=5e-4,
        )
    assert len(records(result, points=50)[0]["steps"]) == 4, "never more than recorded"


def test_mnist5k_task_is_binarized_one_vs_all_of_4000_and_1000_images():
    config = natural_config("book784")
    assert config.datasets == ("mnist5k",)
    (train_x, train_y), (test_x, test_y) = load_task("mnist5k", config)
    assert train_x.shape == (4000, 28, 28) and test_x.shape == (1000, 28, 28)
    assert set(torch.cat([train_x, test_x]).unique().tolist()) == {0, 1}
    assert (train_y == 2).sum() == 400 and (test_y == 2).sum() == 100, "the sixes, as 2"
    assert set(torch.cat([train_y, test_y]).unique().tolist()) == {0.0, 2.0}
    other = load_task("mnist5k", natural_config("book784", positive=3))
    assert not torch.equal(other[0][1], train_y) and (other[0][1] == 2).sum() == 400


STORED = Path(__file__).parents[1] / "book" / "data" / "natural.json"


def test_the_stored_order_784_record_is_the_book784_scale_with_every_run():
    """The chapter's figure comes from this record: it must be what the scale now says, for every
    variant and seed, each run to its last epoch (regenerate it with its command otherwise)."""
    entry = json.loads(STORED.read_text())["book784"]
    result = from_records(entry)
    assert result.config == natural_config("book784")
    assert entry["command"].startswith("python -m tflib.experiments natural --scale book784")
    expected = {("mnist5k", v, s) for v in result.config.variants for s in result.config.seeds}
    assert set(result.runs) == expected
    for history in result.runs.values():
        assert history.status == "budget" and history.steps[-1] == result.config.epochs
        assert history["train"].shape[1] == len(result.config.ranks)


# --- the command line ----------------------------------------------------------------------------


def write_fake_mnist(folder, n_train=30, n_test=12):
    """Plain (not gzipped) IDX files of random 28 x 28 images for both data sets, each in its
    subfolder of ``folder`` as load_mnist expects."""
    generator = torch.Generator().manual_seed(0)
    for name in ("mnist", "fashion_mnist"):
        (folder / name).mkdir()
        for split, n in (("train", n_train), ("test", n_test)):
            images = torch.randint(256, (n, 28, 28), generator=generator)
            labels = torch.arange(n) % 10
            for part, array in (("images", images), ("labels", labels)):
                filename = mnist.IDX_FILES[name][f"{split}_{part}"][0].removesuffix(".gz")
                header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
                (folder / name / filename).write_bytes(header + bytes(array.flatten().tolist()))


def test_cli_runs_the_book_scale_and_draws_the_figure(tmp_path, capsys):
    out = tmp_path / "out"
    main(["natural", "--out", str(out), "--epochs", "1", "--seeds", "0", "--no-progress"])
    assert (out / "figure.png").stat().st_size > 0
    result = NaturalResult.load(out / "results.json")
    assert result.config.epochs == 1 and result.config.datasets == ("digits",)
    assert len(result.runs) == 3
    assert "figure in" in capsys.readouterr().out


def test_cli_in_shards_then_merged_equals_one_run(tmp_path, capsys):
    out = tmp_path / "out"
    common = ["natural", "--out", str(out), "--epochs", "2", "--seeds", "0", "--no-progress"]
    for k in range(3):
        main([*common, "--shard", f"{k}/3"])
        assert "the same command with --merge" in capsys.readouterr().out
    assert not (out / "results.json").exists() and not (out / "figure.png").exists()
    main([*common, "--merge"])
    merged = NaturalResult.load(out / "results.json")
    assert merged.config == natural_config("book", epochs=2, seeds=(0,))
    assert sorted(merged.runs) == sorted(("digits", v, 0) for v in merged.config.variants)
    assert (out / "figure.png").stat().st_size > 0
    whole = tmp_path / "whole"
    main(["natural", "--out", str(whole), "--epochs", "2", "--seeds", "0", "--no-progress"])
    assert NaturalResult.load(whole / "results.json") == merged, "shards merged equal one run"


def test_paper_scale_on_fake_mnist_files_is_refused_before_any_work(tmp_path, capsys):
    write_fake_mnist(tmp_path)  # 30 well-formed images are not MNIST's 60,000
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        main(["natural", "--scale", "paper", "--out", str(out), "--data-dir", str(tmp_path)])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "60,000 images of 28 x 28" in error
    assert not out.exists()


def test_cli_stores_records_that_read_back_as_the_results(tmp_path):
    out, store = tmp_path / "out", tmp_path / "stored.json"
    args = ["natural", "--out", str(out), "--epochs", "2", "--seeds", "3", "--no-progress"]
    main([*args, "--store", str(store), "--name", "tiny"])
    entry = json.loads(store.read_text())["tiny"]
    assert entry["command"] == (
        f"python -m tflib.experiments natural --out {out} --epochs 2 --seeds 3"
    )
    result = NaturalResult.load(out / "results.json")
    assert from_records(entry).config == result.config
    assert entry["runs"] == json.loads(json.dumps(records(result)))


def test_cli_rejects_a_malformed_shard(tmp_path):
    with pytest.raises(SystemExit):
        main(["natural", "--out", str(tmp_path), "--shard", "half"])


def test_paper_scale_without_the_files_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "MIRRORS", {name: ["http://127.0.0.1:9/"] for name in mnist.MIRRORS})
    config = natural_config("paper", epochs=1, seeds=(0,))
    with pytest.raises(ValueError, match="TFLIB_DATA"):
        run_natural(config, device="cpu", progress=False, data_dir=tmp_path)


def test_binarized_mnist_like_images_become_order_784_tasks(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path)
    monkeypatch.setattr(mnist, "MNIST_SIZES", {"train": 30, "test": 12})
    config = natural_config("paper")
    (train_x, train_y), (test_x, _) = load_task("mnist", config, data_dir=tmp_path)
    assert train_x.shape == (30, 28, 28) and test_x.shape == (12, 28, 28)
    raw = mnist.read_idx(tmp_path / "mnist" / "train-images-idx3-ubyte")
    assert torch.equal(train_x, quantize(raw / 255, 2)), "pixels of 128/255 and more become 1"
    assert train_y.tolist() == [2.0 if d == 6 else 0.0 for d in range(10)] * 3
