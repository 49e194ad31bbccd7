"""The command line of every experiment, played as a user who interrupts, resumes, shards, stores
and mistypes: one loop behind all six commands, so each case is checked on each of them."""

from __future__ import annotations

import json
import os
import re
import signal
from dataclasses import replace

import pytest
import test_experiments
import test_hierarchical
import test_matrix
import test_natural
import test_rank_one

import tflib
import tflib.train
from tflib.experiments import dynamics, dynamics_study, hierarchical, matrix, natural, rank_one
from tflib.experiments.__main__ import main

#: Per command: its module (whose "book" scale the tests shrink), its tiny config, and how many
#: steps into the experiment a Ctrl-C lands (in the second of its runs, or in the middle of one).
EXPERIMENTS = {
    "matrix": (matrix, test_matrix.TINY, 350),
    "dynamics": (dynamics, test_experiments.TINY, 260),
    "dynamics-study": (dynamics_study, test_experiments.TINY | {"seeds": (0, 1)}, 260),
    "rank-one": (rank_one, test_rank_one.TINY, 150),
    "natural": (natural, test_natural.TINY | {"seeds": (0, 1)}, 40),
    "hierarchical": (hierarchical, test_hierarchical.TINY | {"seeds": (0, 1)}, 80),
}


@pytest.fixture
def tiny_scales(monkeypatch):
    """Every command's "book" scale made tiny."""
    for module, tiny, _ in EXPERIMENTS.values():
        monkeypatch.setitem(module.SCALES, "book", replace(module.SCALES["book"], **tiny))


def command(name, out, *more):
    return [name, "--out", str(out), "--no-progress", "--device", "cpu", *more]


def results(name, out):
    module = EXPERIMENTS[name][0]
    return module.COMMAND.result.load(out / "results.json")


def exit_code(argv) -> int:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    return stopped.value.code


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_ctrl_c_exits_130_and_the_same_command_resumes_to_the_uninterrupted_result(
    name, tmp_path, tiny_scales, monkeypatch, sigint_guard, capsys
):
    main(command(name, tmp_path / "straight"))
    expected = results(name, tmp_path / "straight")
    at_step, steps = EXPERIMENTS[name][2], {"n": 0}
    original = tflib.train.loss_and_gradients

    def interrupting(model, indices, targets):
        steps["n"] += 1
        if steps["n"] == at_step:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, between two steps
        return original(model, indices, targets)

    monkeypatch.setattr(tflib.train, "loss_and_gradients", interrupting)
    assert exit_code(command(name, tmp_path / "resumed")) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    monkeypatch.setattr(tflib.train, "loss_and_gradients", original)
    main(command(name, tmp_path / "resumed"))
    resumed = results(name, tmp_path / "resumed")
    assert resumed.runs == expected.runs and resumed.values == expected.values
    assert resumed.baselines == expected.baselines


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_a_changed_config_into_an_old_out_is_refused_naming_the_fields(
    name, tmp_path, tiny_scales, capsys
):
    out, other = tmp_path / "out", "float32" if name == "rank-one" else "float64"
    main(command(name, out, "--seeds", "0"))
    before = (out / "results.json").read_text()
    assert exit_code(command(name, out, "--seeds", "0", "--dtype", other)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "dtype: 'torch." in error and "--force" in error
    assert (out / "results.json").read_text() == before
    main(command(name, out, "--seeds", "0", "--force"))  # discards the old runs and starts over


@pytest.mark.parametrize(
    "argv, message",
    [
        (["dynamics", "--shard", "2"], "a shard is k/n"),
        (["dynamics", "--shard", "1/2/3"], "a shard is k/n"),
        (["dynamics", "--shard", "-1/2"], "a shard is k/n"),
        (["dynamics-study", "--n-observations", "0"], "n_observations must be a finite number > 0"),
        (["dynamics-study", "--n-observations", "10001"], "has only 10000 entries"),
        (["dynamics", "--seeds", "0", "0"], "seeds must be distinct"),
        (["rank-one", "--seeds", "-1"], "a seed is a non-negative integer"),
        (["natural", "--epochs", "-3"], "epochs must be a finite number >= 0"),
        (["dynamics-study", "--lr", "nan"], "lr must be a finite number > 0, got nan"),
        (["dynamics", "--device", "tpu"], "unknown device 'tpu'"),
        (["dynamics", "--scale", "huge"], "invalid choice: 'huge'"),
        (["dynamics", "--store", "x.json"], "--store keeps per-run records, which dynamics has"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_status_2_before_any_work(
    argv, message, tmp_path, capsys
):
    out = tmp_path / "out"
    assert exit_code([*argv, "--out", str(out), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error
    assert not out.exists(), "nothing was written"


def test_a_device_this_machine_lacks_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert exit_code(command("dynamics", tmp_path / "out")[:-2] + ["--device", "cuda"]) == 2
    assert "there is no cuda device on this machine; use --device cpu" in capsys.readouterr().err


def test_an_out_that_is_a_file_is_refused(tmp_path, capsys, tiny_scales):
    (tmp_path / "file").write_text("")
    assert exit_code(command("hierarchical", tmp_path / "file")) == 2
    assert "is a file; give a folder for --out" in capsys.readouterr().err


def test_a_corrupt_results_file_is_refused_with_a_fix_that_works(tmp_path, capsys, tiny_scales):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{not json")
    assert exit_code(command("matrix", out)) == 2
    assert "damaged or not a results file" in capsys.readouterr().err
    main(command("matrix", out, "--force"))
    assert len(results("matrix", out).runs) == 4


def test_shards_then_a_merge_give_one_store_entry_with_every_run(tmp_path, tiny_scales, capsys):
    out, store = tmp_path / "out", tmp_path / "stored.json"
    options = ["--store", str(store), "--name", "tiny", "--seeds", "0", "1"]
    for k in range(2):
        main(command("dynamics-study", out, *options, "--shard", f"{k}/2"))
    assert not store.exists(), "shards store nothing: only the whole does"
    main(command("dynamics-study", out, *options, "--merge"))
    entry = json.loads(store.read_text())["tiny"]
    assert sorted((r["seed"], r["init_std"]) for r in entry["runs"]) == [
        (s, std) for s in (0, 1) for std in (0.01, 0.1)
    ]
    assert entry["command"] == (
        f"python -m tflib.experiments dynamics-study --out {out} --seeds 0 1"
    ), "the recorded command is the whole run's, without shards"


def test_a_merge_with_a_shard_missing_is_refused_unless_partial(tmp_path, tiny_scales, capsys):
    out = tmp_path / "out"
    main(command("hierarchical", out, "--shard", "0/3"))
    main(command("hierarchical", out, "--shard", "2/3"))
    assert exit_code(command("hierarchical", out, "--merge")) == 2
    assert "shards 1/3 have no results" in capsys.readouterr().err
    main(command("hierarchical", out, "--merge", "--partial"))
    assert "merged without shards 1/3" in capsys.readouterr().err
    assert list(results("hierarchical", out).runs) == [(0,)]
    assert not list(out.glob("*.png")), "no figure is drawn from incomplete results"


def test_a_merge_of_shards_of_another_config_is_refused(tmp_path, tiny_scales, capsys):
    out = tmp_path / "out"
    for k in range(2):
        main(command("hierarchical", out, "--seeds", "0", "1", "--shard", f"{k}/2"))
    assert exit_code(command("hierarchical", out, "--seeds", "0", "--merge")) == 2
    assert "seeds: (0, 1) there, (0,) now" in capsys.readouterr().err


def test_load_store_reads_a_stored_file_relative_to_the_working_folder(tmp_path, monkeypatch):
    from tflib.experiments.cli import load_store, store

    monkeypatch.chdir(tmp_path)
    store("data/stored.json", "first", {"command": "python -m tflib.experiments matrix"})
    assert load_store("data/stored.json") == {
        "first": {"command": "python -m tflib.experiments matrix"}
    }


def test_load_store_outside_the_repository_fetches_from_it_or_says_where_to_run(
    tmp_path, monkeypatch
):
    import urllib.request

    from tflib.experiments import cli

    monkeypatch.chdir(tmp_path)
    asked = []

    def offline(url, *args):
        asked.append(url)
        raise OSError("no network")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    with pytest.raises(FileNotFoundError, match="run the notebook from book/"):
        cli.load_store("data/missing.json")
    assert asked == [f"{cli.STORED_AT}/data/missing.json"]
    from conftest import ROOT

    url = re.search(r"url: (\S+)", (ROOT / "_config.yml").read_text()).group(1)
    pinned = f"{url.replace('github.com', 'raw.githubusercontent.com')}/v{tflib.__version__}/"
    assert cli.STORED_AT.startswith(pinned), "records come from this version's tag, not main"
