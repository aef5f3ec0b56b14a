"""Batch engines: the local engine and Ray give the numbers of the in-process encoder, bit for bit, in every batch
command (score-log, train, eval, learn); bad engine options are one clear error line.

The Ray tests share one local cluster (2 CPUs) started by a module fixture, and are skipped with the reason when
Ray is not installed or cannot start. Each Ray job starts its actors and loads the encoder in them (seconds on
two cores), so the Ray tests are few and their data tiny.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hybrid_router.cli import main
from hybrid_router.core.encoder import Encoder, batch_plan
from hybrid_router.core.engine_encoder import EmbedBatch, EngineEncoder
from hybrid_router.core.engines import EngineError, LocalEngine, batch_bounds, make_engine
from hybrid_router.traffic.log_scoring import EmbedScorer, read_scores, score_log

TINY = Path(__file__).parent / "data" / "tiny_routing.csv"
TEXTS = [row["query"] for row in csv.DictReader(TINY.open(encoding="utf-8"))][:40]


class Tagged:
    """A batch function recording what it saw: each row's batch size and the instance that ran it."""

    made = 0

    def __init__(self, factor: int):
        Tagged.made += 1
        self.factor = factor

    def __call__(self, batch):
        n = len(batch["x"])
        return {"y": np.asarray(batch["x"]) * self.factor, "size": np.full(n, n), "rows": np.ones((n, 2))}


def make_log(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    from hybrid_router import Answered, RouteDecision
    from hybrid_router.traffic.routing_log import RoutingLog

    small = Answered(RouteDecision("small", 0.8, 0.5, "kwarg:quality_threshold", 0.5), "small", None, ("s", "l"))
    with RoutingLog(path, shadow_rate=1.0) as log:
        for question, small_answer, large_answer in rows:
            call_id = log.log_call(question, small, small_answer)
            log.maybe_shadow(call_id, question, small, lambda a=large_answer: (a, 5, 5)).result(5)
    return path


def graded(path: Path, scorer: str = "embed") -> dict[tuple[str, str], float]:
    """``(query, kind) -> score`` of a log's graded calls (call ids differ between logs)."""
    from hybrid_router.traffic.routing_log import read_calls

    calls = {row["call_id"]: (row["query"], row["kind"]) for row in read_calls(path)}
    return {calls[r["call_id"]]: r["score"] for r in read_scores(path, scorer)}


ANSWERS = [(q, f"The answer is {i % 7}.", f"So the answer is {i % 5}, I think.") for i, q in enumerate(TEXTS[:12])]


# ----------------------------------------------------------------------------------------------- local engine


def test_batch_bounds_cut_rows_by_size_or_by_the_sizes_given():
    assert batch_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert batch_bounds(5, [1, 3, 1]) == [(0, 1), (1, 4), (4, 5)]
    assert batch_bounds(0, 4) == []
    for bad in (0, [2, 2], [0, 5]):
        with pytest.raises(ValueError):
            batch_bounds(5, bad)


def test_the_local_engine_calls_one_instance_on_exactly_the_batches_asked_for():
    Tagged.made = 0
    engine = LocalEngine()
    out = engine.map_batches(Tagged, {"x": [1, 2, 3, 4, 5]}, batch_size=[2, 3], fn_kwargs={"factor": 10})
    assert out["y"].tolist() == [10, 20, 30, 40, 50] and out["size"].tolist() == [2, 2, 3, 3, 3]
    assert out["rows"].shape == (5, 2)
    engine.map_batches(Tagged, {"x": [1]}, batch_size=4, fn_kwargs={"factor": 10})
    assert Tagged.made == 1  # kept between calls, as a Ray worker keeps its model
    with pytest.raises(ValueError, match="equal length"):
        engine.map_batches(Tagged, {"x": [1, 2], "z": [1]}, batch_size=1, fn_kwargs={"factor": 1})


def test_an_engine_encoder_gives_the_encoders_vectors_bit_for_bit():
    local = Encoder(layers=2)
    engine = LocalEngine()
    on_engine = EngineEncoder(layers=2, engine=engine)
    requests = [TEXTS, TEXTS[:3], [TEXTS[5]], []]
    for texts, vectors in zip(requests, on_engine.encode_many(requests, batch_size=16)):
        assert np.array_equal(vectors, local.encode(texts, batch_size=16))
        assert vectors.shape == (len(texts), 384) and vectors.dtype == np.float32
    assert np.array_equal(on_engine.encode(TEXTS[:7]), local.encode(TEXTS[:7]))
    deeper = on_engine.with_layers(3)
    assert isinstance(deeper, EngineEncoder) and deeper.engine is engine and deeper.layers == 3
    # the same batches as Encoder.encode: longest texts first, batch_size a batch
    plan = batch_plan(TEXTS, 16)
    assert [len(b) for b in plan] == [16, 16, 8] and len(TEXTS[plan[0][0]]) == max(map(len, TEXTS))
    assert EmbedBatch(on_engine.settings())({"text": TEXTS[:2]})["embedding"].shape == (2, 384)


def test_an_engine_encoder_checks_its_settings_before_any_worker_starts(tmp_path):
    with pytest.raises(ValueError, match="layers must be"):
        EngineEncoder(layers=9, engine=LocalEngine())
    with pytest.raises(Exception, match="does not exist"):
        EngineEncoder(str(tmp_path / "none"), engine=LocalEngine())


def test_the_embed_scorer_prepared_in_one_job_scores_as_pair_by_pair(tmp_path):
    one, two = make_log(tmp_path / "a.db", ANSWERS), make_log(tmp_path / "b.db", ANSWERS)
    encoder = Encoder(layers=2)

    class PairByPair(EmbedScorer):
        prepare = None  # no batch step: each group embeds its own pair in score()

    score_log(one, EmbedScorer(encoder))
    score_log(two, PairByPair(encoder))
    assert graded(one) == graded(two) and len(graded(one)) == 24


def test_importing_the_engines_loads_neither_ray_nor_torch():
    probe = (
        "import sys, hybrid_router, hybrid_router.core.engines, hybrid_router.core.engine_encoder\n"
        "print(','.join(m for m in ('ray', 'torch', 'transformers', 'pandas') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "", (done.stdout, done.stderr)


# ----------------------------------------------------------------------------------------------- bad options


def one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"hybrid-llm {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_bad_engine_options_are_one_clear_error_line(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "r")
    assert main(["train", str(TINY), "--out", out, "--engine", "spark"]) == 2
    assert "unknown engine 'spark'; choose one of local, ray" in one_line(capsys, "train")
    assert main(["eval", str(TINY), "--workers", "2"]) == 2
    assert "--workers and --ray-address go with --engine ray" in one_line(capsys, "eval")
    assert main(["eval", str(TINY), "--engine", "ray", "--workers", "0"]) == 2
    assert "--workers must be >= 1" in one_line(capsys, "eval")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["eval", str(TINY), "--engine", "ray"]) == 2
    assert "pip install 'hybrid-llm[ray]'" in one_line(capsys, "eval")
    log = make_log(tmp_path / "log.db", ANSWERS[:1])
    assert main(["score-log", str(log), "--scorer", "embed", "--engine", "ray"]) == 2
    assert "pip install 'hybrid-llm[ray]'" in one_line(capsys, "score-log")
    assert main(["learn", str(log), "--out", out, "--engine", "ray"]) == 2
    assert "pip install 'hybrid-llm[ray]'" in one_line(capsys, "learn")
    refs = tmp_path / "refs.csv"
    with refs.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("query", "reference"), (ANSWERS[0][0], "The answer is 0.")])
    assert main(["score-log", str(log), "--scorer", "match", "--references", str(refs), "--engine", "ray"]) == 0
    printed = capsys.readouterr()
    assert "embeds nothing, so it runs here" in printed.err and "match: scored 2 calls" in printed.out
    with pytest.raises(EngineError, match="unknown engine"):
        make_engine("dask")


# ----------------------------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster with 2 CPUs for this module (the engines use it and leave it running)."""
    import logging

    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'hybrid-llm[ray]'")
    pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'hybrid-llm[ray]'")
    if ray.is_initialized():
        ray.shutdown()
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"a local Ray cluster cannot start here: {exc}")
    yield ray
    ray.shutdown()


def test_ray_embeds_in_order_on_two_workers_bit_for_bit(ray_cluster):
    engine = make_engine("ray", workers=2)
    assert engine.workers == 2
    requests = [TEXTS, TEXTS[:5], [TEXTS[7]], []]
    got = EngineEncoder(layers=2, engine=engine).encode_many(requests, batch_size=8)  # one job, 8 batches
    local = Encoder(layers=2)
    for texts, vectors in zip(requests, got):
        np.testing.assert_allclose(vectors, local.encode(texts, batch_size=8), rtol=1e-6)
        assert np.array_equal(vectors, local.encode(texts, batch_size=8))  # same batches: the same bits
    engine.close()
    assert ray_cluster.is_initialized()  # a cluster it did not start is left running


def test_train_and_eval_on_ray_match_the_local_engine(ray_cluster, tmp_path, capsys):
    common = ["--labels", "det", "--recipe", "logistic", "--encoder-layers", "2", "--no-verifier"]
    outputs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        extra = ["--engine", "ray", "--workers", "1"] if engine == "ray" else []
        assert main(["train", str(TINY), *common, "--out", str(out), *extra]) == 0
        capsys.readouterr()
        assert main(["eval", str(TINY), "--router", str(out), *extra]) == 0
        outputs[engine] = (json.loads((out / "router.json").read_text()), capsys.readouterr().out)
    (local_config, local_table), (ray_config, ray_table) = outputs["local"], outputs["ray"]
    assert ray_config == local_config
    assert ray_table == local_table and "oracle" in ray_table
    from hybrid_router import HybridRouter

    scores = {e: HybridRouter.load(tmp_path / e).score_batch(TEXTS) for e in ("local", "ray")}
    np.testing.assert_allclose(scores["ray"], scores["local"], rtol=1e-6)


def test_score_log_and_learn_on_ray_match_the_local_engine(ray_cluster, tmp_path, capsys):
    from hybrid_router import HybridRouter
    from hybrid_router.loop.replay import replay_data
    from hybrid_router.train.data_io import load_routing_data

    scores = {}
    for engine in ("local", "ray"):
        log = make_log(tmp_path / f"answers_{engine}.db", ANSWERS)
        extra = ["--engine", "ray", "--workers", "1"] if engine == "ray" else []
        assert main(["score-log", str(log), "--scorer", "embed", *extra]) == 0
        assert "embed: scored 24 calls" in capsys.readouterr().out
        scores[engine] = graded(log)
    assert scores["ray"].keys() == scores["local"].keys() and len(scores["ray"]) == 24
    calls = sorted(scores["local"])
    np.testing.assert_allclose([scores["ray"][c] for c in calls], [scores["local"][c] for c in calls], rtol=1e-6)

    # learn: 80 replayed calls with recorded scores (shadow answers for all), the newest 16 held out
    base = tmp_path / "replayed.db"
    replay_data(load_routing_data(TINY), base, HybridRouter.shared_default(), shadow_rate=1.0, seed=0)
    decisions = {}
    for engine in ("local", "ray"):
        log = tmp_path / f"learn_{engine}.db"
        shutil.copy(base, log)
        extra = ["--engine", "ray", "--workers", "1"] if engine == "ray" else []
        args = ["learn", str(log), "--out", str(tmp_path / f"out_{engine}"), "--encoder-layers", "2", "--no-refit"]
        assert main([*args, "--force", *extra]) == 0
        printed = capsys.readouterr().out
        decisions[engine] = printed.replace(f"out_{engine}", "OUT").replace(f"learn_{engine}", "LOG")
    assert decisions["ray"] == decisions["local"] and "promoted" in decisions["ray"]
    saved = {e: json.loads((tmp_path / f"out_{e}" / "router.json").read_text()) for e in ("local", "ray")}
    for config in saved.values():
        config["info"].pop("learned")
        config["info"]["trained_on"] = config["info"]["trained_on"].replace("_local", "").replace("_ray", "")
    assert saved["ray"] == saved["local"]
