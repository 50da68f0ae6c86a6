"""The one error type of the data layer.

Bad input is reported where it enters, in terms a user can act on: which file, which line
(1-based, as an editor shows it) or column, what was found and what form was expected.
"""

from __future__ import annotations

from os import PathLike


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
        self.problem = problem
        self.file = None if file is None else str(file)
        self.line = line
        self.row = row
        self.column = column
        self.parameter = parameter
        self.expected = expected
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
