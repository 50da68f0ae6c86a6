"""The one error type of the data layer.

Bad input is reported where it enters, in terms a user can act on: which file, which line
(1-based, as an editor shows it) or column, what was found and what form was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike

MAX_MESSAGE_CHARS = 1000  # a problem or expected form longer than this is cut, never printed whole
MAX_NAMES_SHOWN = 10  # names a message lists before "... (n in all)"


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to about ``limit`` characters: a value from a file (a header of a million
    columns, a line of 10 MB) must not become a 10 MB error message."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters cut]"


def name_list(names: Sequence[str], limit: int = MAX_NAMES_SHOWN) -> str:
    """``['a', 'b', ...] (n in all)``: the first ``limit`` names of a list, each shortened."""
    shown = ", ".join(repr(shorten(str(n), 80)) for n in names[:limit])
    if len(names) <= limit:
        return f"[{shown}]"
    return f"[{shown}, ...] ({len(names)} in all)"


class DataError(ValueError):
    """Input data or an ingest parameter that cannot be used as given.

    Attributes keep the location apart from the text so callers and tests can check it
    without parsing the message.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | PathLike[str] | None = None,
        line: int | None = None,
        row: int | None = None,
        column: str | None = None,
        parameter: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.problem = shorten(problem)
        self.file = None if file is None else shorten(str(file))
        self.line = line
        self.row = row
        self.column = column
        self.parameter = parameter
        self.expected = None if expected is None else shorten(expected)
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        if self.parameter is not None:
            where.append(f"parameter '{self.parameter}'")
        text = f"{', '.join(where)}: {self.problem}" if where else self.problem
        if self.expected is not None:
            text += f" (expected {self.expected})"
        return text
