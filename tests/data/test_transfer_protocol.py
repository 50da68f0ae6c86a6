"""The inductive protocol: pre-training users and downstream users never overlap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clue_pipeline.data.errors import DataError
from clue_pipeline.data.transfer import (
    downstream_rows,
    mark_users,
    pretraining_rows,
    pretraining_users,
)


def test_sides_are_disjoint_cover_everyone_and_follow_the_share():
    table = pd.DataFrame({"user_id": np.arange(1, 20001), "x": 1})
    marked = mark_users(table, "inductive", 0.5, seed=42)
    pre, down = pretraining_rows(marked), downstream_rows(marked)
    assert not set(pre["user_id"]) & set(down["user_id"])
    assert len(pre) + len(down) == len(table)
    assert len(pre) / len(table) == pytest.approx(0.5, abs=0.02)
    assert len(pretraining_rows(mark_users(table, "inductive", 0.2, 42))) / 20000 == pytest.approx(
        0.2, abs=0.02
    )


def test_a_user_is_on_the_same_side_in_every_table_and_seeded():
    ids = np.array([5, 17, 99, 1234, 7])
    alone = pretraining_users(ids, 0.5, 3)
    within = pretraining_users(np.concatenate([ids, np.arange(10_000, 10_100)]), 0.5, 3)[:5]
    assert (alone == within).all()
    many = np.arange(1, 5001)
    assert not (pretraining_users(many, 0.5, 3) == pretraining_users(many, 0.5, 4)).all()


def test_transductive_leaves_tables_as_they_are():
    table = pd.DataFrame({"user_id": [1, 2, 3]})
    assert mark_users(table, "transductive", 0.5, 0) is table
    assert pretraining_rows(table) is table and downstream_rows(table) is table


@pytest.mark.parametrize(
    ("protocol", "share", "parameter"),
    [
        ("both", 0.5, "protocol"),
        ("inductive", 1.0, "pretrain_share"),
        ("inductive", 0, "pretrain_share"),
    ],
)
def test_bad_settings_name_their_parameter(protocol, share, parameter):
    with pytest.raises(DataError, match=f"sequences.transfer.{parameter}"):
        mark_users(pd.DataFrame({"user_id": [1]}), protocol, share, 0)
