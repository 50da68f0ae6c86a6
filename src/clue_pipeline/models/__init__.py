"""Models. Importing the package registers every encoder, also those in their own modules."""

from clue_pipeline.models import caser as _caser  # noqa: F401  (registers "caser" in ENCODERS)
from clue_pipeline.models import filter as _filter  # noqa: F401  (registers "filter")
