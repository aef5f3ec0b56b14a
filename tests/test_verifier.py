"""The answer verifier through the product path: data with answers -> train -> save/load -> score -> cascade."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest

from hybrid_router import DataError, HybridRouter, RouterFileError, load_routing_data, train_router
from hybrid_router.core.encoder import Encoder
from hybrid_router.train.data import shipped_path


@pytest.fixture(scope="module")
def gsm8k_answers():
    return load_routing_data(shipped_path("routellm_gsm8k_answers"))


@pytest.fixture(scope="module")
def trained(gsm8k_answers):
    """A router with a verifier, trained on 300 GSM8K queries with the small model's worked answers."""
    train = gsm8k_answers.subset(np.arange(300))
    return train_router(train, encoder=Encoder(layers=3), depths=None, seed=0)


def test_answer_columns_are_read(gsm8k_answers):
    assert len(gsm8k_answers.small_answers) == len(gsm8k_answers) == len(gsm8k_answers.large_answers)
    assert "16 - 3" in gsm8k_answers.small_answers[0]
    assert load_routing_data(shipped_path("routellm_gsm8k")).small_answers is None


def test_training_on_answers_adds_a_verifier_and_a_cascade_table(trained):
    router = trained.router
    assert router.verifier is not None and router.cascade is not None
    assert "answer_features" in router.verifier.inputs
    names = [r.name for r in trained.validation]
    assert names == ["random", "router", "verifier", "cascade", "oracle"]


def test_the_verifier_ranks_a_wrong_worked_answer_below_a_right_one(trained):
    q = "Tom has 12 apples and buys 3 bags of 4 apples each. How many apples does he have now?"
    right = "He buys 3 * 4 = 12 apples. Now he has 12 + 12 = 24 apples.\n#### 24"
    wrong = "He buys 3 * 4 = 12 apples. Now he has 12 + 12 = 34 apples.\n#### 34"
    scores = trained.router.score_answer_batch([q, q], [right, wrong])
    assert scores[0] > scores[1]


def test_save_and_load_give_identical_scores(trained, gsm8k_answers, tmp_path):
    trained.router.save(tmp_path)
    assert json.loads((tmp_path / "router.json").read_text())["format_version"] == 3
    loaded = HybridRouter.load(tmp_path)
    rows = gsm8k_answers.subset(np.arange(300, 330))
    before = trained.router.score_answer_batch(rows.queries, rows.small_answers)
    after = loaded.score_answer_batch(rows.queries, rows.small_answers)
    np.testing.assert_array_equal(before, after)
    assert loaded.route(rows.queries[0], strategy="cascade").verify_threshold is not None


def test_a_folder_from_a_newer_release_is_a_clear_error(trained, tmp_path):
    trained.router.save(tmp_path)
    config = json.loads((tmp_path / "router.json").read_text())
    (tmp_path / "router.json").write_text(json.dumps(config | {"format_version": 4}))
    with pytest.raises(RouterFileError, match="newer hybrid-llm"):
        HybridRouter.load(tmp_path)


def test_nan_verifier_weights_are_rejected_at_load(trained, tmp_path):
    from safetensors.numpy import load_file, save_file

    trained.router.save(tmp_path)
    tensors = load_file(str(tmp_path / "head.safetensors"))
    key = next(k for k in tensors if k.startswith("verifier.w."))
    tensors[key] = np.full_like(tensors[key], np.nan)
    save_file(tensors, str(tmp_path / "head.safetensors"))
    with pytest.raises(RouterFileError, match="not finite"):
        HybridRouter.load(tmp_path)


def test_a_router_without_verifier_refuses_the_cascade(default_router):
    assert default_router.verifier is None  # the shipped router predates answers (format 1 still loads)
    with pytest.raises(ValueError, match="no answer verifier"):
        default_router.route("What is 2 + 2?", strategy="cascade")
    with pytest.raises(ValueError, match="no answer verifier"):
        default_router.score_answer("What is 2 + 2?", "4")


@pytest.mark.parametrize("bad, reason", [("", "blank"), (None, "missing")])
def test_a_missing_or_blank_answer_is_an_error_naming_the_line(tmp_path, bad, reason):
    rows = [
        {"query": "q1", "small_score": 1, "large_score": 1, "small_answer": "a"},
        {"query": "q2", "small_score": 0, "large_score": 1, "small_answer": bad},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps({k: v for k, v in r.items() if v is not None}) for r in rows))
    with pytest.raises(DataError, match=rf"data.jsonl:2: .*small_answer is {reason}"):
        load_routing_data(path)
    assert load_routing_data(path, skip_bad_rows=True).small_answers == ["a"]


def test_a_non_string_answer_is_an_error(tmp_path):
    path = tmp_path / "data.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"query": "q", "small_score": 1, "large_score": 1, "small_answer": 42}))
    with pytest.raises(DataError, match="small_answer is not a string"):
        load_routing_data(path)


def test_cli_train_and_eval_report_the_verifier_and_the_cascade(gsm8k_answers, tmp_path):
    data = tmp_path / "answers.jsonl"
    rows = gsm8k_answers.subset(np.arange(330, 560))
    with data.open("w") as fh:
        for q, a, s, l in zip(rows.queries, rows.small_answers, rows.mean_small(), rows.mean_large()):
            fh.write(json.dumps({"query": q, "small_answer": a, "small_score": s, "large_score": l}) + "\n")
    cli = [sys.executable, "-m", "hybrid_router.cli"]
    train = subprocess.run(
        [*cli, "train", str(data), "--out", str(tmp_path / "r"), "--encoder-layers", "3"],
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert train.returncode == 0, train.stderr
    assert "answer verifier:" in train.stdout
    ev = subprocess.run(
        [*cli, "eval", str(data), "--router", str(tmp_path / "r"), "--plot", str(tmp_path / "p.png")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ev.returncode == 0, ev.stderr
    lines = {line.split()[0] for line in ev.stdout.splitlines() if line.strip()}
    assert {"router", "verifier", "cascade", "oracle"} <= lines and (tmp_path / "p.png").stat().st_size > 0


def test_same_ranks_keeps_the_calibrated_split():
    from hybrid_router.train.training import same_ranks

    rng = np.random.default_rng(0)
    old = rng.uniform(0.6, 0.9, 200)
    new = 1 / (1 + np.exp(-(3 * old - 1)))  # same order, other scale and intercept
    thresholds = np.array([0.0, 0.65, 0.7, 0.8, 0.95])
    mapped = same_ranks(thresholds, old, new)
    assert [int(np.sum(new < t)) for t in mapped] == [int(np.sum(old < t)) for t in thresholds]
    assert mapped[0] == 0.0 and np.all(np.diff(mapped) >= 0)


def test_the_refitted_router_sends_the_calibrated_share_large(trained, gsm8k_answers):
    """Tables come from out-of-fold scores of all 300 queries, carried onto the refitted head by rank."""
    router = trained.router
    assert router.info["calibration"] == "out-of-fold" and router.calibration.n_queries == 300
    rows = gsm8k_answers.subset(np.arange(300))
    share = float(np.mean(router.score_texts(rows.queries) < router.default_threshold))
    calibrated = router.calibration.large_share[router.calibration.thresholds == router.default_threshold][0]
    assert share == pytest.approx(calibrated, abs=1e-9)


def test_a_verifier_that_cannot_beat_the_router_degrades_the_cascade_to_routing(gsm8k_answers):
    """Answers that belong to other queries carry no signal about these: the verifier is not kept, it becomes the
    router's score alone, train says so, and a cascade on it is routing (no answer is ever escalated)."""
    import dataclasses

    rows = gsm8k_answers.subset(np.arange(300))
    rolled = rows.small_answers[150:] + rows.small_answers[:150]
    noise = dataclasses.replace(rows, small_answers=rolled)
    with pytest.warns(UserWarning, match="not better than route-only"):
        result = train_router(noise, encoder=Encoder(layers=3), depths=None, seed=0)
    router = result.router
    assert router.verifier.inputs == ("route_score",)
    assert router.info["verifier"]["kept_over_route_only"] is False
    assert any("not better than route-only" in w for w in result.warnings)
    # the verifier ranks exactly as the router does
    texts, answers = rows.queries[:40], rows.small_answers[:40]
    route = router.score_batch(texts)
    verified = router.score_answer_batch(texts, answers)
    assert np.array_equal(np.argsort(route, kind="stable"), np.argsort(verified, kind="stable"))


def test_train_says_loudly_when_the_router_is_no_better_than_random(gsm8k_answers):
    import dataclasses

    rows = gsm8k_answers.subset(np.arange(200))
    perm = np.random.default_rng(0).permutation(len(rows))
    shuffled = dataclasses.replace(
        rows,
        small_scores=[rows.small_scores[i] for i in perm],
        large_scores=[rows.large_scores[i] for i in perm],
    )
    with pytest.warns(UserWarning, match="NOT shown better than random"):
        result = train_router(shuffled, encoder=Encoder(layers=3), depths=None, seed=0, verifier=False)
    skill = result.router.info["skill"]
    assert skill["beats_random"] is False and skill["apgr_lower"] <= 0.5 and skill["n"] == 200
