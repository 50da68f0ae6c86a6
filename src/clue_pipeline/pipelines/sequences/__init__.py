"""From interactions to token sequences and the evaluation splits of every task."""

from clue_pipeline.pipelines.sequences.pipeline import create_pipeline

__all__ = ["create_pipeline"]
