"""Reading routing data: formats, grouping samples, and clear errors for bad rows."""

import gzip
import json

import pytest

from hybrid_router import DataError, load_routing_data
from hybrid_router.train.data import SHIPPED_DATASETS, shipped_path


def write(path, text):
    path.write_text(text)
    return path


def test_csv_rows_with_same_query_id_are_samples(tmp_path):
    f = write(tmp_path / "d.csv", "query_id,query,small_score,large_score\na,hi,1,0\na,hi,0,0\nb,yo,0,1\n")
    data = load_routing_data(f)
    assert data.queries == ["hi", "yo"]
    assert data.small_scores[0].tolist() == [1.0, 0.0]


def test_jsonl_and_gzip(tmp_path):
    rows = [{"query": "q1", "small_score": 0.5, "large_score": 1}, {"query": "q2", "small_score": 1, "large_score": 1}]
    f = tmp_path / "d.jsonl.gz"
    with gzip.open(f, "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows))
    assert len(load_routing_data(f)) == 2


@pytest.mark.parametrize("bad", ["", "abc", "nan", "inf"])
def test_bad_score_names_file_and_line(tmp_path, bad):
    f = write(tmp_path / "d.csv", f"query,small_score,large_score\nok,1,1\nbroken,{bad},1\n")
    with pytest.raises(DataError, match=r"d\.csv:3: bad row"):
        load_routing_data(f)


def test_skip_bad_rows_counts_them(tmp_path):
    f = write(tmp_path / "d.csv", "query,small_score,large_score\nok,1,1\nbroken,,1\nalso,x,1\n")
    data = load_routing_data(f, skip_bad_rows=True)
    assert len(data) == 1 and data.skipped_rows == 2


def test_missing_column_and_missing_file(tmp_path):
    f = write(tmp_path / "d.csv", "query,small_score\nq,1\n")
    with pytest.raises(DataError, match="missing column"):
        load_routing_data(f)
    with pytest.raises(FileNotFoundError):
        load_routing_data(tmp_path / "nope.csv")


def test_bad_jsonl_line(tmp_path):
    f = write(tmp_path / "d.jsonl", '{"query": "a", "small_score": 1, "large_score": 1}\n{not json\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: invalid JSON"):
        load_routing_data(f)


def test_shipped_datasets_load():
    for name in SHIPPED_DATASETS:
        data = load_routing_data(shipped_path(name))
        assert len(data) > 50 and data.metric in {"correct01", "judge1to10"}
    with pytest.raises(ValueError, match="unknown shipped dataset"):
        shipped_path("alpaca")
