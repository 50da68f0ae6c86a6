"""The token layout shared by every sequence table and every model of a dataset.

``0`` = padding, items ``1..N``, ``N+1`` = ``[MASK]``, ``N+2`` = ``[UR]``; vocabulary ``N+3``
(docs/architecture.md). Every module asks :func:`special_tokens` for these numbers instead of
writing ``num_items + 1`` itself, so the layout can change in one place.
"""

import operator
from dataclasses import dataclass

PAD = 0  # a zero-initialised batch is already padded
FIRST_ITEM = 1


@dataclass(frozen=True)
class SpecialTokens:
    """Reserved token ids around the item tokens ``1..N``.

    Padding is ``0`` so that a zero-initialised batch is already padded; ``[MASK]`` and
    ``[UR]`` come after the items so that item tokens stay dense and equal to their
    row in the item embedding table.
    """

    pad: int
    mask: int
    user: int
    vocab_size: int

    @property
    def items_end(self) -> int:
        """One past the last item token: items are ``range(FIRST_ITEM, items_end)``, and a
        table indexed by padding and items only (no special token) has ``items_end`` rows."""
        return self.mask


def special_tokens(num_items: int) -> SpecialTokens:
    """The special tokens of a vocabulary of ``num_items`` items (tokens ``1..num_items``)."""
    try:
        count = operator.index(num_items)
    except TypeError:
        count = -1
    if isinstance(num_items, bool) or count < 0:
        raise ValueError(f"num_items = {num_items!r}: expected a non-negative integer")
    return SpecialTokens(pad=PAD, mask=count + 1, user=count + 2, vocab_size=count + 3)
