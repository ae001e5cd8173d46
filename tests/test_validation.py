"""Every public entry point refuses bad arguments at once, naming the argument and the value.

One table per entry point of ``(id, bad arguments, exception, message regex)``: ``TE``
(``TypeError``) for a wrong type, ``VE`` (``ValueError``) for a bad value, ``FNF``
(``FileNotFoundError``) for what does not exist. Paths and tiers in the tables are stand-ins
(:class:`Obj`, :class:`Tiers`, :class:`Local`, :class:`S3`) replaced by real ones on the S3
server and in a temporary directory, both set up once for the module (no test here writes).
"""

from __future__ import annotations

import math
import pathlib
import re
from dataclasses import dataclass
from typing import Any

import dask
import fsspec
import numpy as np
import pytest
import s3fs
from conftest import BUCKET, put_shards
from distributed import Client, LocalCluster

from dask_prefetch import (
    PrefetchSchedulerPlugin,
    PrefetchWorkerPlugin,
    S3PrefetchFileSystem,
    read_tractogram,
)
from dask_prefetch.cluster.scheduler import balanced_groups
from dask_prefetch.formats import CorruptTractogramError
from dask_prefetch.testing.tractograms import synthetic_streamlines, upload_sharded

SIZES = [1000, 5000, 999]  # the objects Obj(0), Obj(1), Obj(2)
NAN, INF = math.nan, math.inf
TE, VE, FNF = TypeError, ValueError, FileNotFoundError


@dataclass(frozen=True)
class Obj:
    """The path of uploaded object ``i`` (``s3://`` in front with ``url``)."""

    i: int
    url: bool = False


@dataclass(frozen=True)
class Tiers:
    """A fresh tier directory with a budget of ``mib``."""

    mib: float


@dataclass(frozen=True)
class Local:
    """A file (or glob) in the test's temporary directory."""

    name: str


@dataclass(frozen=True)
class S3:
    """An ``s3://`` URL in the test bucket (the case then gets the server's storage options)."""

    key: str


def resolve(value: Any, stand_in: Any) -> Any:
    """``value`` with every stand-in replaced by ``stand_in(it)``, inside lists, tuples and dicts."""
    if isinstance(value, (Obj, Tiers, Local, S3)):
        return stand_in(value)
    if isinstance(value, (list, tuple)):
        return type(value)(resolve(v, stand_in) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v, stand_in) for k, v in value.items()}
    return value


def cases(table: list[tuple]) -> list:
    """pytest params from ``(id, arguments, exception, message regex)`` rows."""
    return [pytest.param(args, exc, regex, id=case_id) for case_id, args, exc, regex in table]


def stand_ins(value: Any) -> list:
    """The stand-ins in ``value``."""
    found: list = []
    resolve(value, found.append)
    return found


# -- S3PrefetchFileSystem.open -------------------------------------------------------------------

OPEN = [
    ("path-int", dict(path_or_paths=42), TE, r"path_or_paths must be a path or a list of paths, got 42 \(int\)"),
    ("path-bytes", dict(path_or_paths=b"k"), TE, r"path_or_paths must be .* got b'k' \(bytes\)"),
    ("paths-set", dict(path_or_paths={"a", "b"}), TE, r"path_or_paths must be .* \(set\)"),
    ("paths-mixed", dict(path_or_paths=[Obj(0), 7]), TE, r"path_or_paths\[1\] must be a str path, got 7 \(int\)"),
    ("paths-pathlib", dict(path_or_paths=[pathlib.Path("b/k")]), TE, r"path_or_paths\[0\] .* \(PosixPath\)"),
    ("paths-empty", dict(path_or_paths=[]), VE, r"needs at least one path, got an empty list"),
    ("path-empty", dict(path_or_paths=[Obj(0), ""]), VE, r"path_or_paths\[1\] is an empty path"),
    ("paths-dup", dict(path_or_paths=[Obj(0), Obj(1), Obj(0)]), VE, r"'.*shard000' twice \(at positions 0 and 2\)"),
    ("paths-dup-url", dict(path_or_paths=[Obj(0), Obj(0, url=True)]), VE, r"'.*shard000' twice"),
    ("missing", dict(path_or_paths=f"{BUCKET}/nope"), FNF, rf"No such object: .*{BUCKET}/nope"),
    ("mode-write", dict(mode="wb"), PermissionError, r"read-only: cannot open .* in mode 'wb'"),
    ("mode-none", dict(mode=None), TE, r"mode must be a str such as 'rb', got None \(NoneType\)"),
    ("mode-unknown", dict(mode="rz"), VE, r"invalid mode 'rz'"),
    ("mode-bt", dict(mode="rbt"), VE, r"invalid mode 'rbt'"),
    ("mode-binary-encoding", dict(encoding="utf-8"), VE, r"mode 'rb' is binary: it takes no encoding"),
    ("compression", dict(compression="gzip"), VE, r"does not decompress"),
    ("block-zero", dict(block_size=0), VE, r"block_size must be > 0 bytes, got 0"),
    ("block-negative", dict(block_size="-5 MiB"), VE, r"block_size must be > 0 bytes, got '-5 MiB'"),
    ("block-words", dict(block_size="lots"), VE, r"block_size must be a size such as '32 MiB', got 'lots'"),
    ("block-float", dict(block_size=1.5), TE, r"block_size must be an int of bytes .* got 1.5 \(float\)"),
    ("block-bool", dict(block_size=True), TE, r"block_size must be .* got True \(bool\)"),
    ("part-zero", dict(part_size=0), VE, r"part_size must be > 0 bytes, got 0"),
    ("part-float", dict(part_size=2.0**20), TE, r"part_size must be .* \(float\)"),
    ("concurrency-zero", dict(concurrency=0), VE, r"concurrency must be >= 1, got 0"),
    ("concurrency-float", dict(concurrency=2.0), TE, r"concurrency must be an int or 'auto', got 2.0 \(float\)"),
    ("concurrency-bool", dict(concurrency=True), TE, r"concurrency must be an int or 'auto', got True \(bool\)"),
    ("concurrency-str", dict(concurrency="4"), TE, r"concurrency must be an int or 'auto', got '4' \(str\)"),
    ("timeout-zero", dict(read_timeout=0), VE, r"read_timeout must be a finite number of seconds > 0, got 0"),
    ("timeout-negative", dict(read_timeout="-1s"), VE, r"read_timeout must be a duration .* got '-1s'"),
    ("timeout-nan", dict(read_timeout=NAN), VE, r"read_timeout must be a finite .* got nan"),
    ("timeout-inf", dict(read_timeout=INF), VE, r"read_timeout must be a finite .* got inf"),
    ("timeout-words", dict(read_timeout="soon"), VE, r"read_timeout must be a duration such as '120s', got 'soon'"),
    ("timeout-bool", dict(read_timeout=True), TE, r"read_timeout must be a number of seconds .* \(bool\)"),
    ("timeout-list", dict(read_timeout=[1]), TE, r"read_timeout must be .* got \[1\] \(list\)"),
    ("header-negative", dict(header_bytes=-1), VE, r"header_bytes must be >= 0, got -1"),
    ("header-float", dict(header_bytes=1000.0), TE, r"header_bytes must be an int, got 1000.0 \(float\)"),
    ("header-none", dict(header_bytes=None), TE, r"header_bytes must be an int, got None"),
    ("header-gt-shard", dict(path_or_paths=[Obj(0), Obj(1), Obj(2)], header_bytes=1000), VE, r"larger than shard"),
    ("offset-negative", dict(offset=-1), VE, r"offset must be >= 0, got -1"),
    ("offset-float", dict(offset=1.5), TE, r"offset must be an int, got 1.5 \(float\)"),
    ("storage-empty", dict(prefetch_storage=[]), VE, r"prefetch_storage must name at least one .* empty list"),
    ("storage-str", dict(prefetch_storage="/tmp"), TE, r"prefetch_storage must be a list of .* got '/tmp' \(str\)"),
    ("storage-single", dict(prefetch_storage=[("/tmp",)]), TE, r"\(directory, MiB\) pairs, got \('/tmp',\) at index 0"),
    ("storage-dir-int", dict(prefetch_storage=[(5, 1)]), TE, r"prefetch_storage\[0\] directory must be a str .* got 5"),
    ("storage-budget-str", dict(prefetch_storage=[("/t", "1 GiB")]), TE, r"budget for '/t' must be a number of MiB"),
    ("storage-budget-nan", dict(prefetch_storage=[("/t", NAN)]), VE, r"budget for '/t' must be > 0 MiB, got nan"),
    ("storage-budget-page", dict(prefetch_storage=[("/t", 1e-6)]), VE, r"less than one 4 KiB page"),
    ("storage-dup", dict(prefetch_storage=[("/t/a", 1), ("/t/a/", 2)]), VE, r"'/t/a/' twice \(at index 0 and 1\)"),
    ("storage-no-dir", dict(prefetch_storage=[("/nonexistent/d", 1)]), FNF, r"'/nonexistent/d' does not exist"),
    ("budget-lt-block", dict(path_or_paths=Obj(1), prefetch_storage=Tiers(0.004)), VE, r"blocks of 5000 bytes .* fit"),
    ("pinned-dict", dict(pinned={"name": Obj(0), "size": 1000}), TE, r"pinned must be a list of info dicts"),
    ("pinned-str", dict(pinned=["x"]), TE, r"pinned\[0\] must be an info dict .* got 'x' \(str\)"),
    ("pinned-size-bool", dict(pinned=[{"name": Obj(0), "size": True}]), VE, r"pinned entry .* does not describe"),
    ("pinned-count", dict(path_or_paths=[Obj(0), Obj(1)], pinned=[{"name": Obj(0), "size": 1}]), VE, r"1 entries"),
]


@pytest.fixture(scope="module")
def s3(s3_server) -> tuple[dict, list[str]]:
    """Storage options, and the objects ``SIZES`` made once for the module (no test here writes)."""
    s3_server.reset()
    options = s3_server.storage_options()
    raw = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    raw.mkdir(BUCKET)
    return options, put_shards(raw, SIZES)


@pytest.fixture
def fs(s3) -> S3PrefetchFileSystem:
    return S3PrefetchFileSystem(**s3[0], skip_instance_cache=True)


@pytest.fixture
def objects(s3) -> list[str]:
    return s3[1]


@pytest.mark.parametrize("args, exc, regex", cases(OPEN))
def test_open_refuses(fs, objects, tiers, args, exc, regex):
    def stand_in(s: Obj | Tiers) -> Any:
        return (f"s3://{objects[s.i]}" if s.url else objects[s.i]) if isinstance(s, Obj) else tiers(s.mib)

    kwargs = resolve({"path_or_paths": Obj(0), "prefetch_storage": Tiers(1), **args}, stand_in)
    with pytest.raises(exc, match=regex):
        fs.open(**kwargs).close()


CONFIG = [  # dask-prefetch.<key>: read by every open without the argument
    ("block-size=0", {"block-size": 0}, VE, r"dask-prefetch\.block-size must be > 0 bytes, got 0"),
    ("block-size=big", {"block-size": "big"}, VE, r"dask-prefetch\.block-size must be a size .* got 'big'"),
    ("part-size=1.5", {"part-size": 1.5}, TE, r"dask-prefetch\.part-size must be an int of bytes .* \(float\)"),
    ("concurrency=0", {"concurrency": 0}, VE, r"dask-prefetch\.concurrency must be >= 1, got 0"),
    ("concurrency=many", {"concurrency": "many"}, TE, r"dask-prefetch\.concurrency must be an int or 'auto', got 'many'"),
    ("retries=0", {"retries": 0}, VE, r"dask-prefetch\.retries must be >= 1, got 0"),
    ("retries=True", {"retries": True}, TE, r"dask-prefetch\.retries must be an int, got True \(bool\)"),
    ("read-timeout=nan", {"read-timeout": NAN}, VE, r"dask-prefetch\.read-timeout must be a finite .* got nan"),
    ("read-timeout=never", {"read-timeout": "never"}, VE, r"dask-prefetch\.read-timeout must be a duration"),
    ("storage=str", {"storage": "/dev/shm"}, TE, r"dask-prefetch\.storage must be a list of \(directory, MiB\)"),
    ("storage=single", {"storage": [["/x"]]}, TE, r"dask-prefetch\.storage entries are .* pairs, got \['/x'\]"),
    ("storage=zero", {"storage": [["/x", 0]]}, VE, r"dask-prefetch\.storage budget for '/x' must be > 0 MiB"),
    ("default-budget=0", {"default-budget": "0 B"}, VE, r"dask-prefetch\.default-budget must be > 0 bytes"),
    ("default-budget=words", {"default-budget": "a lot"}, VE, r"dask-prefetch\.default-budget must be a size"),
]


@pytest.mark.parametrize("args, exc, regex", cases(CONFIG))
def test_open_refuses_bad_configuration(fs, objects, args, exc, regex):
    settings = {f"dask-prefetch.{key}": value for key, value in args.items()}
    with dask.config.set(settings), pytest.raises(exc, match=regex):
        fs.open(objects[0]).close()  # no prefetch_storage: the configured (or default) tiers


WORKER_CONFIG = [  # dask-prefetch.<key>: read when a worker sets PrefetchWorkerPlugin up
    ("next-tasks=-1", {"next-tasks": -1}, VE, r"dask-prefetch\.next-tasks must be >= 0, got -1"),
    ("next-task-bytes=1.5", {"next-task-bytes": 1.5}, TE, r"dask-prefetch\.next-task-bytes must be an int of bytes"),
]


@pytest.mark.parametrize("args, exc, regex", cases(WORKER_CONFIG))
def test_worker_plugin_setup_checks_the_configuration(tiers, args, exc, regex):
    settings = {f"dask-prefetch.{key}": value for key, value in args.items()}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client, dask.config.set(settings), pytest.raises(exc, match=regex):
            client.register_plugin(PrefetchWorkerPlugin(prefetch_storage=tiers(1)))


def test_open_accepts(fs, objects, tiers):
    """What validation lets through: NumPy numbers, sizes as strings, Path tiers, digits in the config."""
    ((tier, mib),) = tiers(1)
    kwargs = dict(block_size=np.int64(4096), part_size="16 KiB", header_bytes=np.int32(0), concurrency=np.int64(2))
    with dask.config.set({"dask-prefetch.retries": "3"}):
        with fs.open(objects[0], prefetch_storage=[(pathlib.Path(tier), np.float32(mib))], **kwargs) as f:
            assert f.layout.part_size == 4096  # capped at block_size, as documented
            assert f.seek(np.int64(10)) == 10 and len(f.read(np.int64(5))) == 5


# -- PrefetchFile: seek, read, readinto ----------------------------------------------------------

FILE = [  # (method, arguments), at position 10 of a 1000-byte file
    ("seek-float", ("seek", 1.5), TE, r"seek\(\) offset must be an int, got 1.5 \(float\)"),
    ("seek-str", ("seek", "10"), TE, r"seek\(\) offset must be an int, got '10' \(str\)"),
    ("seek-bool", ("seek", True), TE, r"seek\(\) offset must be an int, got True \(bool\)"),
    ("seek-negative", ("seek", -1), OSError, r"cannot seek to negative position -1"),
    ("seek-before-start", ("seek", -11, 1), OSError, r"cannot seek to negative position -1"),
    ("whence-3", ("seek", 0, 3), VE, r"invalid whence \(3, should be 0, 1 or 2\)"),
    ("whence-float", ("seek", 0, 1.0), TE, r"seek\(\) whence must be an int, got 1.0 \(float\)"),
    ("read-float", ("read", 1.5), TE, r"read\(\) size must be an int, got 1.5 \(float\)"),
    ("read-str", ("read", "10"), TE, r"read\(\) size must be an int, got '10' \(str\)"),
    ("readinto-bytes", ("readinto", b"1234"), TE, r"writable bytes-like object, got a read-only bytes"),
    ("readinto-str", ("readinto", "1234"), TE, r"writable bytes-like object, got str"),
]


@pytest.mark.parametrize("args, exc, regex", cases(FILE))
def test_file_refuses(fs, objects, tiers, args, exc, regex):
    method, *arguments = args
    with fs.open(objects[0], prefetch_storage=tiers(1)) as f:
        f.seek(10)
        with pytest.raises(exc, match=regex):
            getattr(f, method)(*arguments)
        assert f.tell() == 10  # nothing moved
    with pytest.raises(VE, match="closed file"):
        getattr(f, method)(*arguments)


# -- read_tractogram -----------------------------------------------------------------------------

TRACTOGRAM = [  # paths default to the local t.trk, t.pt000, t.pt001
    ("paths-int", dict(paths=42), TE, r"paths must be a path or a list of paths, got 42 \(int\)"),
    ("paths-empty", dict(paths=[]), VE, r"read_tractogram needs at least one path, got an empty list"),
    ("paths-mixed", dict(paths=[Local("t.trk"), 3]), TE, r"paths\[1\] must be a str or os.PathLike path, got 3"),
    ("paths-dup", dict(paths=[Local("t.pt000")] * 2), VE, r"paths lists '.*t.pt000' twice \(at positions 0 and 1\)"),
    ("paths-dup-glob", dict(paths=[Local("t.trk"), Local("t.*")]), VE, r"paths \(globs expanded\) lists .* twice"),
    ("two-stores", dict(paths=[Local("t.pt000"), S3("t.pt001")]), VE, r"paths mix protocols \['file', 's3'\]"),
    ("glob-empty", dict(paths=Local("nothing*.trk")), FNF, r"no file matches '.*nothing\*.trk'"),
    ("missing", dict(paths=Local("missing.trk")), FNF, r"missing.trk"),
    ("directory", dict(paths=Local("subdir")), IsADirectoryError, r"subdir' is a directory"),
    ("s3-glob-empty", dict(paths=S3("nothing*.trk")), FNF, r"no file matches 's3://.*nothing\*.trk'"),
    ("s3-missing", dict(paths=S3("missing.trk")), FNF, rf"No such object: .*{BUCKET}/missing.trk"),
    ("unknown-format", dict(paths=Local("notes.txt")), CorruptTractogramError, r"notes.txt: .* neither a TRK nor"),
    ("header-negative", dict(header_bytes=-1), VE, r"header_bytes must be >= 0, got -1"),
    ("header-float", dict(header_bytes=1000.0), TE, r"header_bytes must be an int, got 1000.0 \(float\)"),
    ("header-bool", dict(header_bytes=True), TE, r"header_bytes must be an int, got True \(bool\)"),
    ("header-gt-shard", dict(header_bytes=10**6), VE, r"header_bytes=1000000 is larger than shard '.*t.pt000'"),
    ("header-no-lone", dict(paths=[Local("t.pt000"), Local("t.pt001")], header_bytes=1000), VE, r"a lone 1000-byte"),
    ("chunk-zero", dict(chunk_size=0), VE, r"chunk_size must be > 0 bytes, got 0"),
    ("chunk-negative", dict(chunk_size=-4096), VE, r"chunk_size must be > 0 bytes, got -4096"),
    ("chunk-float", dict(chunk_size=4096.0), TE, r"chunk_size must be an int of bytes .* got 4096.0 \(float\)"),
    ("npartitions-zero", dict(npartitions=0), VE, r"npartitions must be >= 1, got 0"),
    ("npartitions-negative", dict(npartitions=-2), VE, r"npartitions must be >= 1, got -2"),
    ("npartitions-float", dict(npartitions=2.0), TE, r"npartitions must be an int, got 2.0 \(float\)"),
    ("npartitions-bool", dict(npartitions=True), TE, r"npartitions must be an int, got True \(bool\)"),
    ("block-zero", dict(block_size=0), VE, r"block_size must be > 0 bytes, got 0"),
    ("block-words", dict(block_size="big"), VE, r"block_size must be a size such as '32 MiB', got 'big'"),
    ("storage-empty", dict(prefetch_storage=[]), VE, r"prefetch_storage must name at least one"),
    ("storage-budget", dict(prefetch_storage=[("/x", -1)]), VE, r"budget for '/x' must be > 0 MiB, got -1"),
    ("storage-options-str", dict(storage_options="anon"), TE, r"storage_options must be a dict, got 'anon' \(str\)"),
]


@pytest.fixture(scope="module")
def trk_dir(tmp_path_factory) -> pathlib.Path:
    """``t.trk`` (a lone global header), its shards ``t.pt000`` and ``t.pt001``, a text file and a directory."""
    d = tmp_path_factory.mktemp("tractograms")
    upload_sharded(fsspec.filesystem("file"), str(d / "t"), [synthetic_streamlines(3, seed) for seed in (1, 2)])
    (d / "notes.txt").write_bytes(b"hello, world" * 10)
    (d / "subdir").mkdir()
    return d


@pytest.mark.parametrize("args, exc, regex", cases(TRACTOGRAM))
def test_read_tractogram_refuses(request, trk_dir, args, exc, regex):
    def stand_in(s: Local | S3) -> str:
        return str(trk_dir / s.name) if isinstance(s, Local) else f"s3://{BUCKET}/{s.key}"

    uses_s3 = any(isinstance(s, S3) for s in stand_ins(args))
    kwargs = resolve({"paths": [Local("t.trk"), Local("t.pt000"), Local("t.pt001")], **args}, stand_in)
    kwargs.setdefault("storage_options", request.getfixturevalue("s3")[0] if uses_s3 else None)
    with pytest.raises(exc, match=regex):
        read_tractogram(**kwargs)


def test_read_tractogram_accepts(trk_dir):
    """``os.PathLike`` paths, NumPy ints, ``chunk_size`` as a string."""
    paths = [trk_dir / name for name in ("t.trk", "t.pt000", "t.pt001")]
    tg = read_tractogram(paths, chunk_size="4 KiB", npartitions=np.int64(2), header_bytes=np.int64(1000))
    assert tg.npartitions == 2 and tg.lengths.compute(scheduler="sync").size == 6


# -- the Dask plugins ----------------------------------------------------------------------------

WORKER_PLUGIN = [  # prefetch_storage
    ("str", "/dev/shm", TE, r"prefetch_storage must be a list of \(directory, MiB\) pairs, got '/dev/shm' \(str\)"),
    ("dict", {"/dev/shm": 1}, TE, r"prefetch_storage must be a list .* \(dict\)"),
    ("int", 5, TE, r"prefetch_storage must be a list .* got 5 \(int\)"),
    ("empty", [], VE, r"prefetch_storage must name at least one \(directory, MiB\) tier"),
    ("triple", [("/a", 1, 2)], TE, r"\(directory, MiB\) pairs, got \('/a', 1, 2\) at index 0"),
    ("dir-none", [(None, 1)], TE, r"prefetch_storage\[0\] directory must be a str or os.PathLike, got None"),
    ("dir-empty", [("", 1)], VE, r"prefetch_storage\[0\] directory is an empty path"),
    ("budget-str", [("/a", "1 GiB")], TE, r"budget for '/a' must be a number of MiB, got '1 GiB' \(str\)"),
    ("budget-bool", [("/a", True)], TE, r"budget for '/a' must be a number of MiB, got True \(bool\)"),
    ("budget-zero", [("/a", 0)], VE, r"budget for '/a' must be > 0 MiB, got 0"),
    ("budget-inf", [("/a", INF)], VE, r"budget for '/a' must be > 0 MiB, got inf"),
    ("budget-page", [("/a", 0.001)], VE, r"budget for '/a' of 0.001 MiB is less than one 4 KiB page"),
    ("dup", [("/a", 1), ("/b", 1), ("/b/../a", 2)], VE, r"names directory '/b/../a' twice \(at index 0 and 2\)"),
]


@pytest.mark.parametrize("args, exc, regex", cases(WORKER_PLUGIN))
def test_worker_plugin_refuses(args, exc, regex):
    with pytest.raises(exc, match=regex):
        PrefetchWorkerPlugin(prefetch_storage=args)


SCHEDULER_PLUGIN = [  # balanced_groups(weights, capacities), how it places read tasks
    ("no-worker", ([1], []), VE, r"capacities must add up to more than 0, got \[\]"),
    ("no-threads", ([1], [0, 0]), VE, r"capacities must add up to more than 0"),
    ("negative-weight", ([1, -1], [1]), VE, r"weights\[1\] must be a finite number >= 0, got -1"),
    ("nan-weight", ([NAN], [1]), VE, r"weights\[0\] must be a finite number >= 0, got nan"),
    ("str-weight", (["1"], [1]), TE, r"weights\[0\] must be a number, got '1' \(str\)"),
    ("bool-capacity", ([1], [True]), TE, r"capacities\[0\] must be a number, got True \(bool\)"),
]


@pytest.mark.parametrize("args, exc, regex", cases(SCHEDULER_PLUGIN))
def test_scheduler_plugin_placement_refuses(args, exc, regex):
    with pytest.raises(exc, match=regex):
        balanced_groups(*args)


def test_scheduler_plugin_takes_no_arguments():
    with pytest.raises(TE, match=re.escape("__init__() takes 1 positional argument but 2 were given")):
        PrefetchSchedulerPlugin(1)  # type: ignore[call-arg]
