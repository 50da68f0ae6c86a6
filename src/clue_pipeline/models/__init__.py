"""Models: encoders (one registry, ``encoders.ENCODERS``), heads and pre-training objectives."""
