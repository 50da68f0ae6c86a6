"""Metrics against hand-worked cases, brute force, sklearn and real data."""

import math
from itertools import islice

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from clue_pipeline.metrics import (
    NOT_RANKED,
    classification_metrics,
    metrics_from_ranks,
    ranking_metrics,
    ranking_metrics_from_scores,
    target_ranks,
)

# Hand case: 3 users x 5 items.
#   user 0: target item 0 scores 0.9, the best of the row            -> rank 0
#   user 1: target item 1 scores 0.4; items 0, 3, 4 (0.5, 0.6, 0.7) beat it -> rank 3
#   user 2: target item 0 scores 0.1, the worst of the row            -> rank 4
# Per user: mrr = 1 / (rank + 1), ndcg = 1 / log2(rank + 2) when rank < k, else 0.
#   k=1: only user 0 hits -> recall 1/3, mrr 1/3, ndcg 1/3
#   k=3: user 1 (rank 3) is not < 3 -> same as k=1
#   k=4: users 0 and 1 hit -> recall 2/3, mrr (1 + 1/4)/3, ndcg (1 + 1/log2 5)/3
#   k=5: everyone hits -> recall 1, mrr (1 + 1/4 + 1/5)/3, ndcg (1 + 1/log2 5 + 1/log2 6)/3
HAND_SCORES = torch.tensor(
    [
        [0.9, 0.1, 0.2, 0.3, 0.4],
        [0.5, 0.4, 0.1, 0.6, 0.7],
        [0.1, 0.2, 0.3, 0.4, 0.5],
    ]
)
HAND_TARGETS = torch.tensor([0, 1, 0])


def test_hand_case_from_scores():
    m = ranking_metrics_from_scores(HAND_SCORES, HAND_TARGETS, ks=(1, 3, 4, 5))
    assert m["n_users"] == 3
    assert m["history_excluded"] is False
    for k in (1, 3):
        assert m[f"recall@{k}"] == pytest.approx(1 / 3)
        assert m[f"mrr@{k}"] == pytest.approx(1 / 3)
        assert m[f"ndcg@{k}"] == pytest.approx(1 / 3)
    assert m["recall@4"] == pytest.approx(2 / 3)
    assert m["mrr@4"] == pytest.approx((1 + 1 / 4) / 3)
    assert m["ndcg@4"] == pytest.approx((1 + 1 / math.log2(5)) / 3)
    assert m["recall@5"] == pytest.approx(1.0)
    assert m["mrr@5"] == pytest.approx((1 + 1 / 4 + 1 / 5) / 3)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5) + 1 / math.log2(6)) / 3)


def test_hand_case_through_dot_products():
    # Identity item matrix: U @ I^T reproduces the score matrix exactly.
    m = ranking_metrics(HAND_SCORES, torch.eye(5), HAND_TARGETS, ks=(1, 4, 5), chunk_size=2)
    ranks = target_ranks(HAND_SCORES, torch.eye(5), HAND_TARGETS, chunk_size=2)
    assert ranks.tolist() == [0, 3, 4]
    assert m["mrr@4"] == pytest.approx((1 + 1 / 4) / 3)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5) + 1 / math.log2(6)) / 3)


def test_ties_pessimistic_and_optimistic():
    # Target item 1 scores 0.5; item 4 (0.9) is strictly higher, items 0 and 2 tie with it.
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.1, 0.9]])
    target = torch.tensor([1])
    pess = target_ranks(scores, torch.eye(5), target)
    opt = target_ranks(scores, torch.eye(5), target, ties="optimistic")
    assert pess.tolist() == [3]  # 1 higher + 2 ties placed above
    assert opt.tolist() == [1]  # only the strictly higher one
    m = ranking_metrics_from_scores(scores, target, ks=(2,))
    assert m["recall@2"] == 0.0
    assert ranking_metrics_from_scores(scores, target, ks=(2,), ties="optimistic")["mrr@2"] == 0.5


def test_collapsed_scores_get_no_credit():
    scores = torch.zeros(4, 30)
    m = ranking_metrics_from_scores(scores, torch.tensor([0, 5, 10, 29]), ks=(5, 20))
    assert m["recall@20"] == 0.0
    assert target_ranks(scores, torch.eye(30), torch.tensor([0, 5, 10, 29])).tolist() == [29] * 4


def test_history_exclusion_csr_and_list_agree_and_exclude_a_repeated_target():
    # User 1: masking items 3 and 4 (0.6, 0.7) leaves only item 0 above the target -> rank 1.
    # User 0: its own target (item 0) is in its history (a repeat): excluded like every
    #   history item, as the published trainers do -> not ranked, a miss at every cut-off.
    # User 2: item 4 (the best) masked -> rank 3.
    history = [torch.tensor([0, 2]), torch.tensor([3, 4]), torch.tensor([4])]
    indptr = torch.tensor([0, 2, 4, 5])
    indices = torch.tensor([0, 2, 3, 4, 4])
    for exclude in (history, (indptr, indices)):
        ranks = target_ranks(HAND_SCORES, torch.eye(5), HAND_TARGETS, exclude=exclude, chunk_size=2)
        assert ranks.tolist() == [NOT_RANKED, 1, 3]
        m = ranking_metrics(HAND_SCORES, torch.eye(5), HAND_TARGETS, ks=(2, 5), exclude=exclude)
        assert m["history_excluded"] is True
        assert m["mrr@2"] == pytest.approx((1 / 2) / 3)
        assert m["recall@5"] == pytest.approx(2 / 3)  # k = all 5 items: still a miss
        from_scores = ranking_metrics_from_scores(HAND_SCORES, HAND_TARGETS, (2, 5), exclude)
        assert from_scores == pytest.approx(m)
    # The caller's score matrix is not modified by masking.
    assert HAND_SCORES[1, 4] == pytest.approx(0.7)


def _brute_force_ranks(scores: torch.Tensor, targets: torch.Tensor) -> list[int]:
    order = torch.argsort(scores, dim=1, descending=True)
    return [int((order[u] == targets[u]).nonzero()) for u in range(scores.shape[0])]


def test_chunked_equals_unchunked_and_brute_force():
    g = torch.Generator().manual_seed(0)
    users, items = torch.randn(37, 8, generator=g), torch.randn(50, 8, generator=g)
    targets = torch.randint(0, 50, (37,), generator=g)
    history = [torch.randint(0, 50, (int(n),), generator=g) for n in torch.randint(0, 6, (37,))]
    scores = users @ items.T
    full = ranking_metrics_from_scores(scores, targets, ks=(1, 5, 10, 20))
    full_excl = ranking_metrics_from_scores(scores, targets, ks=(1, 5, 10, 20), exclude=history)
    assert full_excl != full  # exclusion changed something on this draw
    for chunk in (1, 7, 36, 1000):
        m = ranking_metrics(users, items, targets, ks=(1, 5, 10, 20), chunk_size=chunk)
        assert m == pytest.approx(full)
        me = ranking_metrics(users, items, targets, (1, 5, 10, 20), chunk, exclude=history)
        assert me == pytest.approx(full_excl)
    assert target_ranks(users, items, targets).tolist() == _brute_force_ranks(scores, targets)


def test_metrics_from_ranks_vectorised_matches_formula():
    ranks = torch.tensor([0, 1, 9, 10, 100])
    m = metrics_from_ranks(ranks, ks=(10,))
    assert m["recall@10"] == pytest.approx(3 / 5)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 5)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 5)


def test_ranking_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"targets: item indices must lie in 0\.\.4"):
        ranking_metrics_from_scores(HAND_SCORES, torch.tensor([0, 1, 5]))
    with pytest.raises(ValueError, match="d=3 but item_matrix has d=5"):
        ranking_metrics(torch.zeros(3, 3), torch.zeros(4, 5), HAND_TARGETS)
    with pytest.raises(ValueError, match="user row 1 is NaN"):
        bad = HAND_SCORES.clone()
        bad[1, 1] = float("nan")
        ranking_metrics_from_scores(bad, HAND_TARGETS)
    with pytest.raises(ValueError, match="user row 2 is NaN"):
        bad = HAND_SCORES.clone()
        bad[2, 0] = float("nan")
        ranking_metrics(bad, torch.eye(5), HAND_TARGETS, chunk_size=2)
    with pytest.raises(ValueError, match="exclude: item indices"):
        ranking_metrics_from_scores(HAND_SCORES, HAND_TARGETS, exclude=[[0], [7], []])
    with pytest.raises(ValueError, match="ks: expected"):
        ranking_metrics_from_scores(HAND_SCORES, HAND_TARGETS, ks=(0,))


def test_popularity_on_beauty_matches_numpy(shared_data):
    """Real sequences: popularity scoring (many ties) against an independent numpy count."""
    path = shared_data / "s3rec" / "Beauty.txt"
    if not path.exists():
        pytest.skip(f"{path} not found")
    with path.open() as f:
        rows = [np.array(line.split()[1:], dtype=np.int64) for line in islice(f, 3000)]
    num_items = int(max(r.max() for r in rows))
    train = np.concatenate([r[:-1] for r in rows]) - 1
    popularity = np.bincount(train, minlength=num_items).astype(np.float32)
    targets = np.array([r[-1] - 1 for r in rows])
    history = [torch.from_numpy(r[:-1] - 1) for r in rows]
    user_vectors = torch.ones(len(rows), 1)
    item_matrix = torch.from_numpy(popularity).unsqueeze(1)
    m = ranking_metrics(user_vectors, item_matrix, torch.from_numpy(targets), ks=(20,))
    t = popularity[targets]
    expected = (popularity[None, :] >= t[:, None]).sum(1) - 1
    ranks = target_ranks(user_vectors, item_matrix, torch.from_numpy(targets), chunk_size=256)
    np.testing.assert_array_equal(ranks.numpy(), expected)
    assert m["recall@20"] == pytest.approx(float((expected < 20).mean()))
    assert m["recall@20"] > 20 / num_items  # popularity beats random ranking
    excl = ranking_metrics(
        user_vectors, item_matrix, torch.from_numpy(targets), (20,), 256, history
    )
    assert excl["recall@20"] >= m["recall@20"]  # removing competitors never lowers a rank


def test_classification_hand_case():
    # class 0: tp 1, true 2, predicted 2 -> F1 = 2*1/(2+2) = 0.5
    # class 1: tp 2, true 2, predicted 3 -> F1 = 4/5 = 0.8
    # class 2: tp 1, true 2, predicted 1 -> F1 = 2/3
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    m = classification_metrics(y_true, y_pred, num_classes=3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["majority_rate"] == pytest.approx(2 / 6)
    assert m["n"] == 6
    # A class absent from both y_true and y_pred does not enter the mean.
    assert classification_metrics(y_true, y_pred, 5)["macro_f1"] == pytest.approx(m["macro_f1"])


def test_classification_against_sklearn():
    rng = np.random.default_rng(3)
    y_true = rng.choice(7, size=500, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.1, 0.0])
    y_pred = rng.integers(0, 6, size=500)
    m = classification_metrics(torch.from_numpy(y_true), y_pred, num_classes=7)
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["accuracy"] == pytest.approx(float((y_true == y_pred).mean()))
    assert m["majority_rate"] == pytest.approx(float(np.bincount(y_true).max() / 500))


def test_classification_errors():
    with pytest.raises(ValueError, match=r"y_pred: class codes must lie in 0\.\.2"):
        classification_metrics([0, 1], [0, 3], num_classes=3)
    with pytest.raises(ValueError, match="y_true has 2 labels but y_pred has 3"):
        classification_metrics([0, 1], [0, 1, 1], num_classes=3)
    with pytest.raises(ValueError, match="integer class codes"):
        classification_metrics([0.5, 1.0], [0, 1], num_classes=3)


def test_list_of_two_histories_is_not_read_as_csr():
    # Two users; the first history has length 3 = users + 1, like an indptr would.
    scores = torch.tensor([[0.1, 0.9, 0.8, 0.7, 0.2], [0.1, 0.2, 0.3, 0.9, 0.8]])
    targets = torch.tensor([0, 4])
    ranks = target_ranks(scores, torch.eye(5), targets, exclude=[torch.tensor([1, 2, 3]), [3]])
    assert ranks.tolist() == [1, 0]  # user 0: only item 4 (0.2) left above; user 1: item 3 gone
    with pytest.raises(ValueError, match="CSR indptr must be a 1-D integer tensor of length 3"):
        target_ranks(
            scores, torch.eye(5), targets, exclude=(torch.tensor([0, 1]), torch.tensor([1]))
        )


def test_cuda_matches_cpu_when_available():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    g = torch.Generator().manual_seed(5)
    users, items = torch.randn(300, 16, generator=g), torch.randn(200, 16, generator=g)
    targets = torch.randint(0, 200, (300,), generator=g)
    cpu = ranking_metrics(users, items, targets, chunk_size=64)
    gpu = ranking_metrics(users.cuda(), items.cuda(), targets.cuda(), chunk_size=64)
    assert gpu == pytest.approx(cpu)
    scores = (users @ items.T).cuda()
    assert ranking_metrics_from_scores(scores, targets.cuda()) == pytest.approx(cpu)
