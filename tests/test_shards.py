"""Shards (data.export → data.shards): the same samples as direct simulation, split between workers and ranks,
and a stream position that survives the checkpoint.

One export of 6 tiny sweeps (12 samples) serves every test; rendering it spawns a litdata worker process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny import tiny_overrides

from evfocus.config import ConfigError, load_config
from evfocus.data.datamodule import SimulatedSweepDataModule
from evfocus.data.export import export, main
from evfocus.data.shards import StreamingDataLoader, StreamingDataset, rendered_sweep, shard_dataset
from evfocus.sim.simulator import SweepSimulator

ROOT = Path(__file__).parents[1]
SWEEPS = 6


def tiny_config(tmp: Path, *extra: str):
    return load_config(ROOT / "configs/quickstart.yaml",
                       tiny_overrides(tmp, "logging.wandb.enabled=false", "data.batch_size=3", *extra))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("shards")
    export(tiny_config(tmp), str(tmp / "out"), SWEEPS)
    return tmp / "out"


def ids(batch: dict) -> list[tuple[int, int]]:
    return list(zip(batch["sweep_index"].tolist(), batch["sample_index"].tolist(), strict=True))


def shard_config(tmp: Path, shards: Path, *extra: str):
    return tiny_config(tmp, "data.source=shards", f"data.shards.dir={shards}", *extra)


def test_shards_hold_what_direct_simulation_renders(shards, tmp_path):
    cfg = tiny_config(tmp_path)
    index = json.loads((shards / "evfocus_shards.json").read_text())
    assert (index["num_sweeps"], index["num_samples"], index["recipe"]["kind"]) == (SWEEPS, 12, "refocus")
    streamed = {(item["sweep_index"], item["sample_index"]): item for item in StreamingDataset(str(shards))}
    assert sorted(streamed) == [(sweep, sample) for sweep in range(SWEEPS) for sample in range(2)]
    simulator = SweepSimulator(cfg.sim, "train")
    for sweep in (0, SWEEPS - 1):
        for direct in rendered_sweep(cfg, simulator, sweep):
            stored = streamed[(sweep, direct["sample_index"])]
            assert stored.keys() == direct.keys()
            for key, value in direct.items():
                assert torch.equal(torch.as_tensor(stored[key]), torch.as_tensor(value)), key


@pytest.mark.slow  # four loader worker processes
def test_two_workers_and_two_ranks_see_disjoint_samples(shards, tmp_path, monkeypatch):
    cfg = shard_config(tmp_path, shards)
    seen: dict[int, list[tuple[int, int]]] = {}
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("GLOBAL_RANK", str(rank))
        loader = StreamingDataLoader(shard_dataset(cfg), batch_size=1, num_workers=2)
        seen[rank] = [pair for batch in loader for pair in ids(batch)]
    for rank, pairs in seen.items():
        assert len(pairs) == len(set(pairs)) >= 4, (rank, pairs)  # two workers never repeat each other
    assert not set(seen[0]) & set(seen[1])


def test_the_stream_position_survives_the_checkpoint(shards, tmp_path):
    """Epoch 1 and two batches of epoch 2, then a DataModule restored from that state: it yields the rest of
    epoch 2, as an uninterrupted stream does; restored at an epoch's end, it goes on to the next epoch."""
    cfg = shard_config(tmp_path, shards)

    def datamodule(state: dict | None = None) -> SimulatedSweepDataModule:
        module = SimulatedSweepDataModule(cfg)
        if state is not None:
            module.load_state_dict(state)
        module.train_set = shard_dataset(cfg)  # setup("fit") also builds the val sweeps, not needed here
        return module

    whole = datamodule()
    loader = whole.train_dataloader()
    epochs = [[pair for batch in loader for pair in ids(batch)] for _ in range(3)]
    assert sorted(epochs[0]) == sorted(epochs[1]) and epochs[0] != epochs[1]  # reshuffled every epoch

    stopped = datamodule()
    loader = stopped.train_dataloader()
    assert [pair for batch in loader for pair in ids(batch)] == epochs[0]
    at_epoch_end = json.loads(json.dumps(stopped.state_dict()))  # the checkpoint holds plain values
    part = []
    for batch in loader:
        part.extend(ids(batch))
        if len(part) == 6:
            break
    resumed = datamodule(stopped.state_dict())
    assert part + [pair for batch in resumed.train_dataloader() for pair in ids(batch)] == epochs[1]
    assert [pair for batch in datamodule(at_epoch_end).train_dataloader() for pair in ids(batch)] == epochs[1]


def test_shards_of_other_settings_and_bad_outputs_are_refused(shards, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"data.num_bins: shards 4, config 8"):
        shard_dataset(shard_config(tmp_path, shards, "data.num_bins=8"))
    with pytest.raises(ConfigError, match="kind: shards 'refocus', config 'stack'"):
        shard_dataset(shard_config(tmp_path, shards, "stage=merge", "monitor=val/psnr"))
    with pytest.raises(ConfigError, match=r"evfocus_shards\.json is not readable"):
        shard_dataset(shard_config(tmp_path, tmp_path))
    with pytest.raises(SystemExit):
        main(["--config", str(ROOT / "configs/quickstart.yaml"), "--out", str(shards), "--sweeps", "1"])
    assert "not empty; shards go to a new folder" in capsys.readouterr().err


@pytest.mark.slow  # two tiny training runs
def test_a_resumed_run_restores_the_shard_position_from_its_checkpoint(shards, tmp_path):
    from evfocus.training.run import train

    overrides = ["run_name=shards", "checkpoint_every_n_steps=1", "trainer.max_epochs=-1"]
    _, first = train(shard_config(tmp_path, shards, *overrides, "trainer.max_steps=3"))
    checkpoint = torch.load(first["run_dir"] / "checkpoints" / "last.ckpt", weights_only=True)
    position = checkpoint["SimulatedSweepDataModule"]["shards"]
    assert position["num_samples_yielded"] == 9 and position["current_epoch"] == 1  # 3 of 4 batches of 3
    _, resumed = train(shard_config(tmp_path, shards, *overrides, "trainer.max_steps=5", "ckpt_path=last"))
    assert resumed["trainer"].global_step == 5
    restored = resumed["datamodule"].train_loader.state_dict()
    assert (restored["current_epoch"], restored["num_samples_yielded"]) == (2, 3)  # epoch 1's last batch, then 1
