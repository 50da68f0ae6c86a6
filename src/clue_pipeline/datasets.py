"""Kedro datasets the project adds: torch checkpoints, written atomically."""

from __future__ import annotations

import glob
import os
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version, get_filepath_str

from clue_pipeline.training.checkpoint import write_atomic


class TorchCheckpointDataset(AbstractVersionedDataset[dict, dict]):
    """A dict of tensors and plain values saved with ``torch.save``.

    Loading uses ``weights_only=True``: a checkpoint can carry no code, so one downloaded from
    elsewhere is safe to open. Saving goes through a temporary file and ``os.replace``, so a run
    killed while writing never leaves a half-written model in place of the previous one.
    """

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(Path(filepath).as_posix()),
            version=version,
            exists_function=os.path.exists,
            glob_function=glob.glob,
        )

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "version": self._version}

    def load(self) -> dict:
        path = get_filepath_str(self._get_load_path(), "file")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - re-raised with the file named
            raise DatasetError(f"{path}: not a loadable checkpoint ({exc})") from exc

    def save(self, data: dict) -> None:
        path = get_filepath_str(self._get_save_path(), "file")
        write_atomic(path, lambda stream: torch.save(data, stream))

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), "file")
        except DatasetError:
            return False
        return Path(path).exists()
