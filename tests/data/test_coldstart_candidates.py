"""Cold-start candidate sets: the paper's label classes, or the whole target catalogue."""

import pytest

from clue_pipeline.data.errors import DataError
from tests.data.test_coldstart import TOY, _build, _ordered


def test_labels_rank_only_the_items_users_start_with():
    _, data = _build(TOY)
    assert set(data.target_index["item_id"]) == {4, 6}  # item 2 is only user 1's third comedy


def test_catalogue_adds_every_target_item_after_the_label_classes():
    _, labels = _build(TOY)
    _, catalogue = _build(TOY, candidates="catalogue")
    size = len(labels.target_index)
    assert catalogue.target_index.head(size).equals(labels.target_index)
    assert catalogue.target_index["item_id"].tolist()[size:] == [2]  # 'Dark Comedy' 5 is not
    assert catalogue.targets.equals(labels.targets)


def test_catalogue_by_domain_is_every_item_the_log_has_there():
    import pandas as pd

    from clue_pipeline.data.coldstart import build_coldstart
    from clue_pipeline.data.sequences import build_item_index
    from tests.data.test_coldstart import _settings

    # user 3 has no source item and is dropped; their target item is still a candidate
    ordered = _ordered([(1, 10, 1), (1, 11, 2), (1, 12, 3), (2, 14, 1), (2, 15, 2), (3, 16, 1)])
    ordered["domain"] = ["source", "target", "source", "source", "target", "target"]
    data = build_coldstart(
        ordered,
        pd.DataFrame({"item_id": [10]}),
        build_item_index(ordered),
        _settings(min_source_items=1, candidates="catalogue"),
        "peterrec",
    )
    assert data.target_index["item_id"].tolist() == [11, 15, 16]
    assert set(data.targets["user_id"]) == {1, 2}


def test_an_unknown_candidate_set_is_named():
    with pytest.raises(DataError, match="sequences.coldstart.candidates"):
        _build(TOY, candidates="everything")
