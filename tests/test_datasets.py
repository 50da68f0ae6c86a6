"""The project's Kedro dataset for torch checkpoints: versioned, atomic, weights only."""

from __future__ import annotations

import pickle

import pytest
import torch
from kedro.io.core import DatasetError, Version

from clue_pipeline.datasets import TorchCheckpointDataset


class Payload:
    """Any class: a checkpoint holding code must not load."""


def test_round_trip_keeps_every_version(tmp_path):
    path = tmp_path / "models" / "encoder.pt"
    first = TorchCheckpointDataset(str(path), version=Version(None, "2026-01-01T00.00.00.000Z"))
    first.save({"config": {"hidden": 8}, "state_dict": {"w": torch.ones(2)}})
    second = TorchCheckpointDataset(str(path), version=Version(None, "2026-01-02T00.00.00.000Z"))
    second.save({"config": {"hidden": 8}, "state_dict": {"w": torch.zeros(2)}})

    latest = TorchCheckpointDataset(str(path), version=Version(None, None)).load()
    assert torch.equal(latest["state_dict"]["w"], torch.zeros(2))
    assert len(list(path.iterdir())) == 2
    assert not list(path.rglob("*.tmp"))  # nothing half-written left behind


def test_a_checkpoint_carrying_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        torch.save({"payload": Payload()}, handle, pickle_module=pickle)
    with pytest.raises(DatasetError, match="evil.pt: not a loadable checkpoint"):
        TorchCheckpointDataset(str(path)).load()
