"""User-vector tables and neighbours (clue_pipeline.embedding) on hand-made data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from clue_pipeline.embedding import (
    EmbedConfig,
    UnknownUserError,
    embedding_device,
    encode_tokens,
    nearest_users,
    similar_users,
    user_vector_table,
    vector_columns,
    vectors_to_frame,
)
from clue_pipeline.models.encoders import EncoderConfig, build_encoder

MAX_LEN = 4
NUM_ITEMS = 9


@pytest.fixture
def vectors() -> pd.DataFrame:
    """Five users in 2-D whose cosine order is known by construction (ids not in row order)."""
    matrix = np.array(
        [
            [1.0, 0.0],  # 30
            [10.0, 1.0],  # 10: nearly 30's direction, much longer (cosine ignores length)
            [1.0, 1.0],  # 20: 45 degrees
            [0.0, 2.0],  # 50: 90 degrees from 30
            [-1.0, 0.0],  # 40: opposite of 30
        ]
    )
    return vectors_to_frame(np.array([30, 10, 20, 50, 40]), matrix)


@pytest.fixture
def encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    config = EncoderConfig(num_items=NUM_ITEMS, max_len=MAX_LEN, hidden=8, blocks=1, heads=2)
    return build_encoder(config)


def test_similar_users_ranks_by_cosine_and_excludes_the_user(vectors):
    result = similar_users(vectors, 30, k=3)

    assert list(result.columns) == ["user_id", "similarity"]
    assert result["user_id"].tolist() == [10, 20, 50]
    expected = [10 / np.sqrt(101), 1 / np.sqrt(2), 0.0]
    np.testing.assert_allclose(result["similarity"], expected, atol=1e-6)


def test_similar_users_caps_k_at_the_other_users_and_puts_the_opposite_last(vectors):
    result = similar_users(vectors, 30, k=100)

    assert len(result) == 4
    assert result["user_id"].iloc[-1] == 40
    assert result["similarity"].iloc[-1] == pytest.approx(-1.0)
    assert result["similarity"].is_monotonic_decreasing


def test_ties_go_to_the_smaller_user_id_whatever_the_row_order():
    matrix = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0], [0.0, 2.0]])
    frame = vectors_to_frame(np.array([1, 9, 4, 7]), matrix)

    assert similar_users(frame, 1, k=3)["user_id"].tolist() == [4, 7, 9]
    assert similar_users(frame.iloc[::-1], 1, k=3)["user_id"].tolist() == [4, 7, 9]


def test_a_zero_vector_has_zero_similarity_not_nan():
    frame = vectors_to_frame(np.array([1, 2, 3]), np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]))

    result = similar_users(frame, 1, k=2)

    assert result["user_id"].tolist() == [3, 2]
    assert result["similarity"].iloc[1] == 0.0


def test_nearest_users_answers_several_queries_with_ranks(vectors):
    result = nearest_users(vectors, [30, 40], k=2)

    assert list(result.columns) == ["query_user_id", "rank", "user_id", "similarity"]
    assert result["query_user_id"].tolist() == [30, 30, 40, 40]
    assert result["rank"].tolist() == [1, 2, 1, 2]
    assert result.loc[result["query_user_id"] == 40, "user_id"].tolist() == [50, 20]
    assert (result["user_id"] != result["query_user_id"]).all()


def test_unknown_user_error_names_the_id_and_the_table(vectors):
    with pytest.raises(UnknownUserError, match=r"user_id \[99\] not in the user vectors table"):
        similar_users(vectors, 99, k=2)
    with pytest.raises(KeyError):  # callers catching pandas-style lookups still catch it
        similar_users(vectors, 99, k=2)


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_k_below_one_or_not_an_integer_is_refused(vectors, k):
    with pytest.raises(ValueError, match=rf"k = {k!r}; expected an integer >= 1"):
        similar_users(vectors, 30, k=k)


def test_duplicated_user_ids_are_refused(vectors):
    doubled = pd.concat([vectors, vectors.head(1)])
    with pytest.raises(ValueError, match=r"user_id \[30\] appear more than once"):
        similar_users(doubled, 10, k=1)


def test_vector_columns_come_in_dimension_order_and_must_be_complete():
    frame = pd.DataFrame({"u10": [0.0], "user_id": [1], "u2": [0.0], "u0": [0.0], "u1": [0.0]})
    with pytest.raises(ValueError, match="no gap"):
        vector_columns(frame)
    frame = frame.drop(columns="u10").assign(u3=0.0)
    assert vector_columns(frame) == ["u0", "u1", "u2", "u3"]


def test_user_vector_table_embeds_the_most_recent_items_of_every_user(encoder):
    sequences = pd.DataFrame(
        {
            "user_id": np.array([7, 3, 11], dtype=np.int64),
            "items": [[1, 2, 3, 4, 5, 6], [9], [2, 2, 8]],
        }
    )

    table = user_vector_table(encoder, sequences, EmbedConfig(batch_size=2, device="cpu"))

    assert table["user_id"].tolist() == [7, 3, 11]
    assert table["user_id"].dtype == np.int64
    assert vector_columns(table) == [f"u{i}" for i in range(8)]
    assert (table[vector_columns(table)].dtypes == np.float32).all()
    ur = NUM_ITEMS + 2
    by_hand = torch.tensor([[3, 4, 5, 6, ur], [0, 0, 0, 9, ur], [0, 2, 2, 8, ur]])
    with torch.no_grad():
        expected = encoder.eval()(by_hand).user.numpy()
    np.testing.assert_allclose(table[vector_columns(table)].to_numpy(), expected, atol=1e-6)


def test_encoding_is_deterministic_despite_dropout(encoder):
    """Eval mode: the dropout of pre-training must not make a user's vector random."""
    tokens = np.array([[0, 1, 2, 3, NUM_ITEMS + 2]] * 3, dtype=np.int64)
    encoder.train()

    first = encode_tokens(encoder, tokens, batch_size=2)

    np.testing.assert_array_equal(first, encode_tokens(encoder, tokens, batch_size=2))
    # Another batch size may change the kernels' summation order (last-bit rounding on some
    # CPUs), never by a dropout's size: equal rows stay equal to float precision.
    np.testing.assert_allclose(first, encode_tokens(encoder, tokens, batch_size=3), atol=1e-6)
    np.testing.assert_allclose(first[0], first[2], atol=1e-6)


def test_no_users_gives_an_empty_table_of_the_right_width(encoder):
    empty = pd.DataFrame({"user_id": np.array([], dtype=np.int64), "items": []})

    table = user_vector_table(encoder, empty, EmbedConfig(device="cpu"))

    assert len(table) == 0
    assert vector_columns(table) == [f"u{i}" for i in range(8)]


def test_sequences_without_items_column_say_what_is_missing(encoder):
    with pytest.raises(ValueError, match=r"sequences: missing column\(s\) \['items'\]"):
        user_vector_table(encoder, pd.DataFrame({"user_id": [1]}), EmbedConfig(device="cpu"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"device": "tpu"}, r"embed.device = 'tpu': expected one of \['auto', 'cpu', 'cuda'\]"),
        ({"batch_size": 0}, r"embed.batch_size = 0: expected an integer >= 1"),
    ],
)
def test_embed_config_names_the_bad_parameter(settings, message):
    with pytest.raises(ValueError, match=message):
        EmbedConfig(**settings)


def test_auto_device_is_cuda_only_where_there_is_one():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert embedding_device("auto").type == expected
    assert embedding_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="embed.device = 'cuda' but no CUDA device"):
            embedding_device("cuda")
