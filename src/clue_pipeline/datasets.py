"""Kedro datasets the project adds: torch checkpoints and tuned recipes, written atomically."""

from __future__ import annotations

import glob
import os
from pathlib import Path, PurePosixPath
from typing import Any

import torch
import yaml
from kedro.io.core import (
    AbstractDataset,
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
)

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


class RecipeDataset(AbstractDataset[dict, dict]):
    """A run configuration (``kedro run --config <file>``) as YAML under a comment header.

    ``save`` takes ``{"header": text, **yaml}``: the header's lines become ``# `` comments above
    the YAML. The file is written to a temporary file and renamed over the old one, so a killed
    run leaves the previous recipe whole; a file whose first line is not the header's first
    line (one this dataset did not write, e.g. a recipe written by hand) is never replaced.
    ``load`` returns the same shape.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def load(self) -> dict:
        text = self._filepath.read_text(encoding="utf-8")
        lines = text.splitlines()
        header = [line.removeprefix("#").removeprefix(" ") for line in _leading_comments(lines)]
        try:
            body = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise DatasetError(f"{self._filepath}: not a YAML recipe ({exc})") from exc
        return {"header": "\n".join(header), **body}

    def save(self, data: dict) -> None:
        header = str(data.get("header", "")).splitlines()
        if not header:
            raise DatasetError(f"{self._filepath}: a recipe needs a header (its first line)")
        first = f"# {header[0]}"
        if self._filepath.exists():
            existing = self._filepath.read_text(encoding="utf-8").splitlines()[:1]
            if existing != [first]:
                raise DatasetError(
                    f"{self._filepath} exists and was not written by this pipeline (its first "
                    f"line is not {first!r}); move it away or rename it to keep it"
                )
        body = {k: v for k, v in data.items() if k != "header"}
        text = "".join(f"# {line}".rstrip() + "\n" for line in header)
        text += yaml.safe_dump(body, sort_keys=False, default_flow_style=False)
        write_atomic(self._filepath, lambda stream: stream.write(text.encode("utf-8")))

    def _exists(self) -> bool:
        return self._filepath.is_file()


def _leading_comments(lines: list[str]) -> list[str]:
    found = []
    for line in lines:
        if not line.startswith("#"):
            break
        found.append(line)
    return found
