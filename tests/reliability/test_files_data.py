"""Bad routing-data files: one clear error line naming the file (and line), exit status 2, never a traceback.

Every case writes a real file and runs the real ``hybrid-llm`` console script in a child interpreter.
"""

import gzip
import json
import os
import subprocess
import sys

import pytest

from hybrid_router import DataError, load_routing_data

HEADER = "query_id,query,small_score,large_score,small_model,large_model\n"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``hybrid-llm ARGS`` in a fresh interpreter, offline."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hybrid_router.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def assert_one_clear_error(done: subprocess.CompletedProcess, command: str, *fragments: str) -> None:
    """Exit status 2, one stderr line ``hybrid-llm CMD: error: ...`` holding every fragment, no traceback."""
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"hybrid-llm {command}: error: "), lines[0]
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write_bad_files(tmp_path):
    """name -> (path, expected fragments of the error besides the file name)."""
    files = {}

    def add(name, content, *fragments):
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        files[name] = (path, fragments)

    add("two_queries.csv", HEADER + "a,hi,1,0,s,l\na,ho,0,0,s,l\n", ":3:", "query_id 'a'", "different query")
    add("two_models.csv", HEADER + "a,hi,1,0,s,l\na,hi,0,0,other,l\n", ":3:", "different small_model")
    add("long_field.csv", "query,small_score,large_score\n" + "x" * 200_000 + ",1,0\n", ":2:", "field limit")
    big = "1" * 401
    add("huge_score.jsonl", '{"query": "q", "small_score": ' + big + ', "large_score": 1}\n', ":1:", "too large")
    add("deep.jsonl", "[" * 100_000 + "]" * 100_000 + "\n", ":1:", "nested too deeply")
    add("bad.csv.gz", b"this is not gzip data", "not a valid gzip file")
    whole = gzip.compress(("query,small_score,large_score\n" + "q,1,0\n" * 2000).encode())
    add("truncated.csv.gz", whole[: len(whole) // 2], "truncated")
    add("utf16.csv", "query,small_score,large_score\nq,1,0\n".encode("utf-16"), ":1:", "not UTF-8", "UTF-16")
    (tmp_path / "folder.csv").mkdir()
    files["folder.csv"] = (tmp_path / "folder.csv", ("is a directory",))
    return files


CASES = [
    "two_queries.csv",
    "two_models.csv",
    "long_field.csv",
    "huge_score.jsonl",
    "deep.jsonl",
    "bad.csv.gz",
    "truncated.csv.gz",
    "utf16.csv",
    "folder.csv",
]


@pytest.mark.parametrize("name", CASES)
def test_bad_data_file_is_one_clear_cli_error(tmp_path, name):
    path, fragments = write_bad_files(tmp_path)[name]
    command = "eval" if name.endswith(".jsonl") else "train"
    args = [str(path)] if command == "eval" else [str(path), "--out", str(tmp_path / "router")]
    assert_one_clear_error(run_cli(command, *args), command, str(path), *fragments)
    assert not (tmp_path / "router").exists()


@pytest.mark.parametrize("name", CASES)
def test_bad_data_file_is_a_data_error_in_the_api(tmp_path, name):
    path, fragments = write_bad_files(tmp_path)[name]
    with pytest.raises(DataError) as caught:
        load_routing_data(path)
    assert str(path) in str(caught.value) and all(f in str(caught.value) for f in fragments)


def test_a_utf8_bom_keeps_the_first_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "a,hi,1,0,s,l\na,hi,0,0,s,l\nb,yo,0,1,s,l\n").encode())
    data = load_routing_data(path)
    assert data.query_ids == ["a", "b"] and data.small_scores[0].tolist() == [1.0, 0.0]
    gz = tmp_path / "bom.jsonl.gz"
    gz.write_bytes(
        gzip.compress(b"\xef\xbb\xbf" + json.dumps({"query": "q", "small_score": 1, "large_score": 0}).encode())
    )
    assert load_routing_data(gz).queries == ["q"]


def test_samples_of_one_query_and_model_pair_still_group(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text(HEADER + "a,hi,1,0,s,l\na,hi,0,0,s,l\na,hi,1,1,,\n")
    data = load_routing_data(path)
    assert data.query_ids == ["a"] and data.small_scores[0].tolist() == [1.0, 0.0, 1.0]


def test_a_huge_score_is_a_bad_row_that_can_be_skipped(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [
        '{"query": "q", "small_score": ' + "9" * 401 + ', "large_score": 1}',
        '{"query": "ok", "small_score": 1, "large_score": 1}',
    ]
    path.write_text("\n".join(rows) + "\n")
    data = load_routing_data(path, skip_bad_rows=True)
    assert data.queries == ["ok"] and data.skipped_rows == 1
