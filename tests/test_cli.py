"""The hybrid-llm CLI end to end on a small shipped CSV (real encoder, real training)."""

import json
import subprocess
import sys
from pathlib import Path

from hybrid_router import HybridRouter
from hybrid_router.cli import main

TINY = Path(__file__).parent / "data" / "tiny_routing.csv"


def test_train_then_eval(tmp_path, capsys):
    out = tmp_path / "router"
    assert (
        main(
            [
                "train",
                str(TINY),
                "--labels",
                "trans",
                "--default-max-drop",
                "0.05",
                "--encoder-layers",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "t* =" in printed and "APGR" in printed and "saved router" in printed
    assert "(certified: max_quality_drop=0.05, delta=0.1, on 60 out-of-fold calibration queries)" in printed
    assert "router skill: APGR" in printed
    router = HybridRouter.load(out)
    assert router.label_mode == "trans" and router.calibration is not None
    assert router.default_threshold == router.calibration.threshold_for_max_quality_drop(0.05)
    assert router.encoder_layers == 2 and router.encoder.layers == 2

    plot, metrics = tmp_path / "curve.png", tmp_path / "m.json"
    assert main(["eval", "--router", str(out), str(TINY), "--plot", str(plot), "--json", str(metrics)]) == 0
    printed = capsys.readouterr().out
    assert "oracle" in printed and "random" in printed
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"
    rows = json.loads(metrics.read_text())
    assert [r["router"] for r in rows] == ["random", "router", "oracle"]


def test_bad_rows_are_a_clear_error_or_skipped(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text(TINY.read_text() + 'x,"a broken row",m,,m,1,src,correct01\n')
    assert main(["eval", str(bad)]) == 2
    assert "bad.csv:" in capsys.readouterr().err
    assert main(["eval", str(bad), "--skip-bad-rows"]) == 0
    assert "1 bad rows skipped" in capsys.readouterr().out


def test_missing_router_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", "--router", str(tmp_path / "none"), str(TINY)]) == 2
    assert "not a router folder" in capsys.readouterr().err


def test_console_script_help():
    done = subprocess.run([sys.executable, "-m", "hybrid_router.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "train" in done.stdout and "eval" in done.stdout
