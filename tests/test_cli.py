"""The ``dask-prefetch`` command: demo on the embedded default, stats against a real (local) S3, errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
from conftest import BUCKET

from dask_prefetch.cli.main import cli, main
from dask_prefetch.cli.types import NUMERIC_TYPES, StorageEntry
from dask_prefetch.testing import LocalS3Server
from dask_prefetch.testing.tractograms import sharded_tractogram, synthetic_streamlines, trk_bytes, upload_sharded


def run_cli(args: list[str], timeout: float, code: str | None = None) -> subprocess.CompletedProcess:
    """``python -m dask_prefetch ARGS`` (or ``python -c CODE``) as a user runs it; a hang fails the test.

    On a timeout the whole process group (LocalCluster workers, servers) is killed.
    """
    command = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "dask_prefetch", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"dask-prefetch {' '.join(args)} still running after {timeout} s") from None
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def one_line(stderr: str) -> str:
    """The only line of ``stderr``; else an assertion showing it all."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{stderr}"
    return lines[0]


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
    assert "prefetch, this job only: 3 streams" in out and "bounding box (mm)" in out


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
    lines = result.stdout.splitlines()
    # What was simulated, then the warm-up on a line of its own (untimed), then the timed job, then the headline.
    setting = next(i for i, x in enumerate(lines) if x.startswith("setting: "))
    assert "2 TRK shards" in lines[setting] and "no WAN" in lines[setting]
    assert "2 workers x 1 threads" in lines[setting]
    warm = next(i for i, x in enumerate(lines) if x.startswith("warm-up, not timed: TRK kernels "))
    assert "LocalCluster + plugins" in lines[warm] and "store clients" in lines[warm]
    assert re.search(r"workers' kernels: (loaded from numba's cache|compiled)", lines[warm]), lines[warm]
    job = next(i for i, x in enumerate(lines) if x.startswith("dask_prefetch ("))
    head = next(i for i, x in enumerate(lines) if x.startswith("headline: nibabel over plain s3fs took "))
    assert setting < warm < job < head
    assert "warm-up excluded from both" in lines[head] and "README has no figure for this setting" in lines[head]
    timeline = next(x for x in lines if x.startswith("timeline of one traced read in this process"))
    assert "not the cluster job" in timeline


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


# --- bad arguments: every numeric option of every command (#19.3) -----------------------------------

ZERO_ALLOWED = {("stats", "--header-bytes"), ("demo", "--latency"), ("plan", "--compute-s-per-mib"),
                ("plan", "--parse-s-per-mib"), ("plan", "--latency-ms"), ("plan", "--header-bytes"),
                ("plan", "--next-task-mib"), ("plan", "--job-overhead-s")}  # 0 means "none" there  # fmt: skip
REQUIRED_ARGS = {"stats": ["x.trk"]}
KNOWN = {
    ("stats", "--workers"), ("stats", "--threads"), ("stats", "--header-bytes"), ("stats", "--npartitions"),
    ("stats", "--storage"), ("demo", "--size-mb"), ("demo", "--shards"), ("demo", "--latency"),
    ("demo", "--bandwidth-mib"), ("demo", "--workers"), ("demo", "--threads"), ("bench", "--repeat"),
    ("plan", "--workers"), ("plan", "--threads"), ("plan", "--nic-gbps"), ("plan", "--compute-s-per-mib"),
    ("plan", "--latency-ms"), ("plan", "--bandwidth-mibs"), ("plan", "--data-gb"), ("plan", "--shards"),
    ("plan", "--tier-mib"), ("plan", "--memory-mib"), ("plan", "--block-mib"), ("plan", "--part-mib"),
    ("plan", "--job-overhead-s"),
}  # fmt: skip


def numeric_options() -> list[tuple[str, str, click.ParamType]]:
    """``(command, --option, type)`` of every option taking a number, found in the click commands."""
    found = []
    for name, command in sorted(cli.commands.items()):
        for param in command.params:
            if isinstance(param, click.Option) and not param.is_flag and isinstance(param.type, NUMERIC_TYPES):
                found.append((name, max(param.opts, key=len), param.type))
    return found


def bad_values(command: str, option: str, kind: click.ParamType) -> list[str]:
    zero = [] if (command, option) in ZERO_ALLOWED else ["0"]
    if isinstance(kind, StorageEntry):
        return ["/tmp:0", "/tmp:-1", "/tmp:nan", "/tmp:inf", "/tmp:abc", "/tmp", ":64"]
    if isinstance(kind, click.types.IntParamType):
        return [*zero, "-1", "1.5", "nan", "inf", "abc", ""]
    return [*zero, "-1", "nan", "inf", "-inf", "abc", ""]


BAD = [(c, o, v) for c, o, kind in numeric_options() for v in bad_values(c, o, kind)]


def test_every_numeric_option_is_tried():
    found = {(c, o) for c, o, _ in numeric_options()}
    assert KNOWN <= found, KNOWN - found
    assert ZERO_ALLOWED <= found
    assert len(BAD) >= 5 * len(found)


@pytest.mark.parametrize("command, option, good", [(c, o, "/tmp:1" if isinstance(k, StorageEntry) else "1")
                                                   for c, o, k in numeric_options()]
                         + [(c, o, "0") for c, o in sorted(ZERO_ALLOWED)])  # fmt: skip
def test_good_numbers_are_accepted(command, option, good):
    ctx = cli.commands[command].make_context(command, [*REQUIRED_ARGS.get(command, []), option, good])
    assert ctx.params[option.lstrip("-").replace("-", "_")] in (1, 1.0, 0, 0.0, (("/tmp", 1.0),))


@pytest.mark.parametrize("command, option, value", BAD, ids=[f"{c} {o} {v!r}" for c, o, v in BAD])
def test_a_bad_number_is_a_one_line_usage_error(command, option, value, capsys):
    args = [*REQUIRED_ARGS.get(command, []), option, value]
    with pytest.raises(click.BadParameter):  # refused while parsing: the command never starts
        cli.commands[command].make_context(command, list(args))
    capsys.readouterr()
    assert main([command, *args]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"dask-prefetch: error: Invalid value for '{option}'"), line
    assert f"dask-prefetch {command} --help" in line


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_stats_with_no_workers_exits_at_once_as_a_user_runs_it(tmp_path, workers):
    trk = tmp_path / "small.trk"
    trk.write_bytes(trk_bytes(synthetic_streamlines(50)))
    result = run_cli(["stats", str(trk), "--workers", workers, "--no-progress"], timeout=60)
    assert result.returncode == 2, result.stderr
    assert "is not in the range x>=1" in one_line(result.stderr)


def test_usage_errors_are_one_line_and_verbose_shows_the_usage(capsys):
    assert main(["stats"]) == 2
    assert "Missing argument 'PATHS...'" in one_line(capsys.readouterr().err)
    assert main(["no-such-command"]) == 2
    assert "No such command" in one_line(capsys.readouterr().err)
    assert main(["--verbose", "stats", "x.trk", "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert "Usage: dask-prefetch stats" in err and "0 is not in the range x>=1" in err


# --- a task failing on a worker: one line, no worker log (#19.6) -----------------------------------


def test_a_task_failing_on_a_worker_prints_one_line(tmp_path):
    raw = trk_bytes(synthetic_streamlines(200, seed=1))
    bad = tmp_path / "truncated.trk"
    bad.write_bytes(raw[:-7])  # the header is fine (the graph builds); the last record is cut short
    result = run_cli(["stats", str(bad), "--workers", "1", "--no-progress"], timeout=120)
    assert result.returncode == 1, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("dask-prefetch: error: CorruptTractogramError: ") and "truncated" in line, line
    # --verbose: the traceback (and the worker's log of the failed task)
    result = run_cli(["--verbose", "stats", str(bad), "--workers", "1", "--no-progress"], timeout=120)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "CorruptTractogramError" in result.stderr


# --- the demo without its extra (#16.5) ----------------------------------------------------------


@pytest.mark.parametrize("module", ["moto", "flask", "flask_cors"])
def test_the_demo_without_the_demo_extra_names_it(module):
    # The module made unimportable in the CLI's process (sys.modules[name] = None: find_spec says None).
    code = f"import sys; sys.modules[{module!r}] = None; from dask_prefetch.cli.main import main; sys.exit(main(['demo']))"
    result = run_cli(["demo"], timeout=60, code=code)
    assert result.returncode == 1, result.stderr
    line = one_line(result.stderr)
    assert 'pip install "dask-prefetch[demo]"' in line and module in line, line


def test_the_local_s3_server_without_moto_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "moto", None)
    with pytest.raises(ImportError, match=r'moto: pip install "dask-prefetch\[demo\]"'):
        LocalS3Server().start()
