"""Ingest: raw files of any supported format -> `interactions`, `users`, `items`."""

from clue_pipeline.pipelines.ingest.pipeline import create_pipeline

__all__ = ["create_pipeline"]
