"""The history-excluded ranking protocol on data with repeats, against the published trainers.

``tests/fixtures/s3rec_repeats.txt`` is an S3-Rec file (``user item item ...``) whose users
consume items again. Leave-one-out per user (train / valid target / test target):

    user 1: 1 2 3 / 4 / 5   no repeat
    user 2: 1 2 1 / 3 / 1   test target repeats a training item
    user 3: 2 3 4 / 2 / 3   valid target and test target repeat training items
    user 4: 5 6 1 / 2 / 6   test target repeats a training item
    user 5: 3 4 5 / 6 / 6   test target repeats only the validation item
    user 6: 6 5 4 / 3 / 2   no repeat

The published trainers (S3-Rec's ``trainers.py``, BSARec's, ...) zero every item of the
user's history before ranking: for validation ``items[:-2]``, for the test ``items[:-1]``
(the validation item included). A target that repeats a history item is zeroed with it and
is a miss. Hand-made scores, the same for every user, rank the items 1 > 2 > 3 > 4 > 5 > 6:

    test, history kept:      ranks 4, 0, 2, 5, 5, 1
    test, history excluded:  ranks 0, -, -, -, -, 1   (users 2-5 miss)
    valid, history excluded: ranks 0, 0, -, 0, 2, 2   (user 3 misses)

(with history excluded, user 1's test target 5 is left with item 6 only: rank 0; user 6's
target 2 has item 1 above it: rank 1.)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.config import OmegaConfigLoader

from clue_pipeline.metrics import NOT_RANKED, ranking_metrics, target_ranks
from clue_pipeline.models.popularity import PopularityModel
from clue_pipeline.pipelines.evaluate.nodes import evaluate_next_item as evaluate_node
from clue_pipeline.pipelines.ingest.nodes import read_raw_dataset, validate_dataset
from clue_pipeline.pipelines.sequences.nodes import (
    filter_and_order_interactions,
    index_items_and_build_sequences,
    split_next_item,
)
from clue_pipeline.tasks.finetuning import MethodSpec, evaluate_next_item, export_checkpoint
from clue_pipeline.tasks.task_data import next_item_data
from tests.conftest import REPO_ROOT

FIXTURE = Path(__file__).parent / "fixtures" / "s3rec_repeats.txt"
MAX_LEN = 50
# Hand-made score of each raw item id, the same for every user: 1 > 2 > ... > 6.
ITEM_SCORES = {1: 0.6, 2: 0.5, 3: 0.4, 4: 0.3, 5: 0.2, 6: 0.1}
TEST_KEPT_RANKS = [4, 0, 2, 5, 5, 1]
TEST_EXCLUDED_RANKS = [0, NOT_RANKED, NOT_RANKED, NOT_RANKED, NOT_RANKED, 1]
VALID_EXCLUDED_RANKS = [0, 0, NOT_RANKED, 0, 2, 2]


def _params(env: str) -> dict:
    config = OmegaConfigLoader(
        str(REPO_ROOT / "conf"), base_env="base", default_run_env="local", env=env
    )
    return config["parameters"]


def _read(env: str = "beauty", **ingest) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The fixture through the ingest and sequences nodes, as ``kedro run --env <env>``."""
    params = _params(env)
    options = params["ingest"] | {"path": str(FIXTURE)} | ingest
    raw = read_raw_dataset(str(FIXTURE), options)
    interactions, _, _ = validate_dataset(*raw, options)
    ordered = filter_and_order_interactions(interactions, params["sequences"])
    item_index, sequences = index_items_and_build_sequences(ordered, params["sequences"], MAX_LEN)
    return interactions, item_index, split_next_item(sequences, params["sequences"])


def _raw_ids(tokens, item_index: pd.DataFrame) -> list[int]:
    lookup = dict(zip(item_index["token"], item_index["item_id"], strict=True))
    return [int(lookup[t]) for t in tokens]


def _scores_by_column(item_index: pd.DataFrame) -> torch.Tensor:
    """ITEM_SCORES as the (N,) vector over item columns ``token - 1``."""
    scores = torch.zeros(len(item_index))
    for item_id, token in zip(item_index["item_id"], item_index["token"], strict=True):
        scores[int(token) - 1] = ITEM_SCORES[int(item_id)]
    return scores


@pytest.fixture(scope="module")
def fixture_data():
    interactions, item_index, split = _read()
    data = next_item_data(split, MAX_LEN, len(item_index))
    return item_index, split, data


@pytest.mark.parametrize("env", ["beauty", "sports"])
def test_amazon_environments_read_s3rec_files_with_their_repeats(env):
    interactions, item_index, split = _read(env)
    assert len(interactions) == 30  # every item token of the file is an event
    assert split["user_id"].tolist() == [1, 2, 3, 4, 5, 6]
    train = [_raw_ids(t, item_index) for t in split["train"]]
    assert train == [[1, 2, 3], [1, 2, 1], [2, 3, 4], [5, 6, 1], [3, 4, 5], [6, 5, 4]]
    assert _raw_ids(split["valid_target"], item_index) == [4, 3, 2, 2, 6, 3]
    assert _raw_ids(split["test_target"], item_index) == [5, 1, 3, 6, 6, 2]


def test_a_user_item_event_key_drops_earlier_repeats_unlike_the_published_reading():
    # Not how the published trainers read the file: only each item's last consumption stays.
    interactions, _, split = _read(duplicate_key=["user_id", "item_id"])
    assert len(interactions) == 24
    assert not interactions.duplicated(["user_id", "item_id"]).any()
    assert split["user_id"].tolist() == [1, 6]  # the others fall under min_seq_len 5


def test_history_is_everything_before_the_target(fixture_data):
    item_index, _, data = fixture_data

    def histories(ranking) -> list[list[int]]:
        offsets, columns = ranking.history
        bounds = zip(offsets[:-1], offsets[1:], strict=True)
        return [sorted(set(_raw_ids(columns[a:b] + 1, item_index))) for a, b in bounds]

    assert histories(data.valid) == [[1, 2, 3], [1, 2], [2, 3, 4], [1, 5, 6], [3, 4, 5], [4, 5, 6]]
    assert histories(data.test)[4] == [3, 4, 5, 6]  # user 5: the validation item included


def test_excluded_protocol_counts_a_repeated_target_as_a_miss(fixture_data):
    item_index, _, data = fixture_data
    users = _scores_by_column(item_index).expand(6, -1)  # (U, N): every user the same scores
    items = torch.eye(len(item_index))
    targets = torch.as_tensor(data.test.targets)
    excluded = target_ranks(users, items, targets, exclude=data.test.history, chunk_size=4)
    assert excluded.tolist() == TEST_EXCLUDED_RANKS
    valid = target_ranks(
        users, items, torch.as_tensor(data.valid.targets), exclude=data.valid.history
    )
    assert valid.tolist() == VALID_EXCLUDED_RANKS
    m = ranking_metrics(users, items, targets, ks=(1, 2, 6), exclude=data.test.history)
    assert m["recall@1"] == pytest.approx(1 / 6)
    assert m["recall@2"] == pytest.approx(2 / 6)
    assert m["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 6)
    assert m["mrr@2"] == pytest.approx((1 + 1 / 2) / 6)
    assert m["recall@6"] == pytest.approx(2 / 6)  # every item in the list: still 4 misses


def test_kept_protocol_ranks_a_repeated_target(fixture_data):
    item_index, _, data = fixture_data
    users = _scores_by_column(item_index).expand(6, -1)
    targets = torch.as_tensor(data.test.targets)
    kept = target_ranks(users, torch.eye(len(item_index)), targets)
    assert kept.tolist() == TEST_KEPT_RANKS
    m = ranking_metrics(users, torch.eye(len(item_index)), targets, ks=(3,))
    assert m["history_excluded"] is False
    assert m["recall@3"] == pytest.approx(3 / 6)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(4)) / 6)


def test_selection_and_test_follow_the_one_switch(fixture_data):
    """Validation (model selection) and the evaluate node rank under ``exclude_history``."""
    item_index, split, data = fixture_data
    model = PopularityModel(_scores_by_column(item_index))
    valid = evaluate_next_item(model, data.valid, exclude_history=True)
    assert valid["recall@5"] == pytest.approx(5 / 6)  # user 3's repeated target misses
    checkpoint = export_checkpoint(
        model, MethodSpec("pop", backbone="pop"), task="next_item", max_len=MAX_LEN
    )
    for exclude_history, chosen in ((True, "history_excluded"), (False, "history_kept")):
        record = evaluate_node(
            checkpoint, split, item_index, {"exclude_history": exclude_history}, "fixture"
        )
        assert record["metrics"] == record["protocols"][chosen]
    protocols = record["protocols"]
    assert protocols["history_excluded"]["recall@5"] == pytest.approx(2 / 6)
    kept_hits = np.array(TEST_KEPT_RANKS) < 5
    assert protocols["history_kept"]["recall@5"] == pytest.approx(kept_hits.mean())


def _published_hit_rate(path: Path, scores: dict[int, float], k: int, part: str) -> float:
    """S3-Rec's full-sort evaluation, restated: read the file with its repeats, zero the
    scores of ``items[:-2]`` (valid) or ``items[:-1]`` (test), take the top k."""
    hits = []
    for line in path.read_text().splitlines():
        items = [int(x) for x in line.split(" ", 1)[1].split(" ")]
        history, answer = (items[:-2], items[-2]) if part == "valid" else (items[:-1], items[-1])
        rating = dict(scores)
        for item in history:
            rating[item] = 0.0
        top = sorted(rating, key=rating.get, reverse=True)[:k]
        hits.append(answer in top)
    return float(np.mean(hits))


@pytest.mark.parametrize("part", ["valid", "test"])
def test_matches_the_published_trainer_on_positive_scores(fixture_data, part):
    # With every score above zero, the trainers' zeroing and our -inf remove the same items.
    item_index, _, data = fixture_data
    ranking = data.valid if part == "valid" else data.test
    users = _scores_by_column(item_index).expand(6, -1)
    for k in (1, 2, 3):
        ours = ranking_metrics(
            users,
            torch.eye(len(item_index)),
            torch.as_tensor(ranking.targets),
            ks=(k,),
            exclude=ranking.history,
        )
        assert ours[f"recall@{k}"] == pytest.approx(
            _published_hit_rate(FIXTURE, ITEM_SCORES, k, part)
        )
