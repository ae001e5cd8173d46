"""The ``dask-prefetch`` command: demo on the embedded default, stats against a real (local) S3, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BUCKET

from dask_prefetch.cli.main import main
from dask_prefetch.testing.tractograms import sharded_tractogram, upload_sharded


@pytest.fixture
def aws_env(monkeypatch, storage_options):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", storage_options["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", storage_options["secret"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return storage_options["endpoint_url"]


def test_stats_counts_a_sharded_tractogram_on_s3(raw_fs, aws_env, capsys, tmp_path):
    shards = sharded_tractogram(2, 3, seed=7)
    upload_sharded(raw_fs, f"{BUCKET}/hydi", shards)
    n = sum(len(s) for s in shards)
    points = sum(len(x) for s in shards for x in s)
    code = main(["stats", f"s3://{BUCKET}/hydi.*", "--endpoint-url", aws_env, "--storage", f"{tmp_path}:64",
                 "--workers", "1", "--no-progress"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"{n:,} streamlines, {points:,} points" in out
    assert "prefetch: 3 streams" in out and "bounding box (mm)" in out


def test_errors_are_one_clear_line_and_a_non_zero_exit(aws_env, capsys):
    code = main(["stats", f"s3://{BUCKET}/nothing-here.trk", "--endpoint-url", aws_env])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("dask-prefetch: error: FileNotFoundError")
    assert "Traceback" not in err
    assert main(["stats", "x.trk", "--storage", "no-budget"]) == 2  # a usage error
    assert main(["--version"]) == 0


def test_demo_runs_the_main_job_on_the_embedded_default(tmp_path):
    # As a user runs it: a console process, a small tractogram, no WAN, the nibabel comparison, a timeline.
    png = tmp_path / "timeline.png"
    result = subprocess.run(
        [sys.executable, "-m", "dask_prefetch", "demo", "--size-mb", "4", "--shards", "2", "--latency", "0",
         "--timeline", str(png)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "streamlines" in result.stdout and "same counts" in result.stdout
    assert "Traceback" not in result.stderr
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("example", ["quickstart.py", "one_big_object.py", "cluster_length_histogram.py"])
def test_examples_run_against_the_embedded_s3(example):
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, str(root / "examples" / example)], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "demo OK" in result.stdout


def test_the_notebook_runs_cell_by_cell():
    notebook = json.loads((Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb").read_text())
    code = "\n\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "streamlines, mean" in result.stdout


def test_bench_merges_and_plots_what_the_scripts_wrote(tmp_path):
    pytest.importorskip("matplotlib")
    from dask_prefetch.cli.bench import plot, targets

    merged = {
        "prefetch": {
            "medians": {"io": {"dask_prefetch": 1.0, "s3fs default": 7.5}},
            "targets": {"io: >= 4x faster than s3fs default": 7.5, "io: within 1.3x of download-everything-first": 1.4},
            "target_limits": {"io: >= 4x faster than s3fs default": 4.0, "io: within 1.3x of download-everything-first": 1.3},
        },
        "cluster": {"medians": {"(c)": 5.8, "(b)": 7.8}, "targets": {"(c) <= 1.2x ideal": 3.4}, "target_limits": {"(c) <= 1.2x ideal": 1.2}},
    }  # fmt: skip
    assert [(name, met) for name, _, _, _, met in targets(merged)] == [
        ("prefetch", True),
        ("prefetch", False),
        ("cluster", False),
    ]
    plot(merged, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_runs_a_script_of_the_checkout(tmp_path, capsys):
    code = main(["bench", "--only", "parsers", "--repeat", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (tmp_path / "bench_parsers.json").is_file() and (tmp_path / "bench.json").is_file()
    assert "TRK: ours >= 10x" in out and (tmp_path / "bench.png").is_file()
