"""clue-pipeline: contrastive pre-training of transferable user representations (CLUE)."""

__version__ = "0.1.0"
