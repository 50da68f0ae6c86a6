"""The full report's assembly: a section placed ahead of a heading."""

from __future__ import annotations

from benchmarks.report_full import insert_before


def test_insert_before_places_the_section_ahead_of_its_heading():
    text = "# r\n\n## A\na\n\n## Wall\nw\n"
    assert (
        insert_before(text, "## Wall", "## New\nn\n")
        == "# r\n\n## A\na\n\n## New\nn\n\n## Wall\nw\n"
    )
    assert insert_before(text, "## Missing", "## New\n") == f"{text.rstrip()}\n\n## New\n\n"
    assert insert_before(text, "## Wall", "") == text
