"""Item attributes: S3-Rec's JSON files and MovieLens genres, to (token, attribute) codes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from clue_pipeline.data.attributes import (
    attribute_codes,
    genre_attributes,
    load_attributes,
    read_item2attributes,
)
from clue_pipeline.data.errors import DataError


def test_reads_an_item2attributes_file(tmp_path):
    path = tmp_path / "Toy_item2attributes.json"
    path.write_text(json.dumps({"4": [1, 2], "83": [2], "90": []}))
    pairs = read_item2attributes(path)
    assert pairs.to_dict("list") == {"item_id": [4, 4, 83], "attribute": ["1", "2", "2"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "found a list"),
        ("{}", "that is empty"),
        ('{"a4": [1]}', "item id 'a4' is not a non-negative integer"),
        ('{"4": [1, "x"]}', "item 4: attributes"),
    ],
)
def test_malformed_file_names_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "Bad_item2attributes.json"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as error:
        read_item2attributes(path)
    assert error.value.file == str(path)


def test_missing_file_and_bad_source_are_named(tmp_path):
    with pytest.raises(DataError, match="Nope.json: file not found"):
        read_item2attributes(tmp_path / "Nope.json")
    with pytest.raises(DataError, match="parameter 'attributes.path'"):
        load_attributes({"source": "item2attributes"}, pd.DataFrame())
    with pytest.raises(DataError, match="parameter 'attributes.source'.*unknown"):
        load_attributes({"source": "tags"}, pd.DataFrame())
    with pytest.raises(DataError, match="no 'genres' column"):
        genre_attributes(pd.DataFrame({"item_id": [1]}))


def test_genres_become_codes_of_indexed_items_only():
    items = pd.DataFrame({"item_id": [10, 20, 30], "genres": ["Comedy|Drama", "", "Drama"]})
    index = pd.DataFrame({"item_id": [10, 20], "token": [1, 2]})
    codes = attribute_codes(genre_attributes(items), index)
    assert codes.to_dict("list") == {"token": [1, 1], "attribute": [0, 1]}  # Comedy, Drama
    assert load_attributes({"source": "none"}, items).empty


def test_the_published_beauty_attributes_match_its_items(shared_data):
    pairs = read_item2attributes(shared_data / "s3rec" / "Beauty_item2attributes.json")
    assert pairs["item_id"].nunique() == 12_101 and pairs["attribute"].nunique() == 637
    index = pd.DataFrame({"item_id": pairs["item_id"].unique()})
    index["token"] = range(1, len(index) + 1)
    codes = attribute_codes(pairs, index)
    assert codes["token"].nunique() == len(index)
