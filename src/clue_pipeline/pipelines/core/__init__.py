"""`core`: the chain for large corpora (see pipeline.py)."""

from clue_pipeline.pipelines.core.pipeline import create_pipeline

__all__ = ["create_pipeline"]
