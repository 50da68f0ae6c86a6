"""Experiment cells of the report: what a cell is, where it is stored, how it is run, and how
cells become the report's tables, figures and verdicts.

Pure Python, pandas and matplotlib (torch only to summarise an encoder's user vectors); Kedro
appears only as the ``kedro run`` command the runner starts for each cell.
"""
