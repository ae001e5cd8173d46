"""The TRK kernels are compiled once and persist: on disk (numba's cache, even from a read-only package) and
warmed in each worker's plugin setup, so no timed task compiles them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("numba")

from distributed import Client, LocalCluster  # noqa: E402

from dask_prefetch.cluster import PrefetchWorkerPlugin  # noqa: E402
from dask_prefetch.formats import kernels  # noqa: E402

KERNELS = Path(kernels.__file__)

WARM = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("kernels_copy", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["kernels_copy"] = module
spec.loader.exec_module(module)
print(json.dumps(module.warm()._asdict()))
"""


def _read_only_command() -> list[str]:
    """A prefix that makes this user unable to write where the file modes say no (root ignores modes)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only directory cannot be made here")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, "--bounding-set", caps, "--inh-caps", caps]


def _warm_in_a_new_process(module: Path, env: dict) -> dict:
    result = subprocess.run([*_read_only_command(), sys.executable, "-c", WARM, str(module)],
                            capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("numba_cache_dir", [False, True], ids=["user-cache-dir", "NUMBA_CACHE_DIR"])
def test_kernels_persist_across_processes_when_the_package_is_read_only(numba_cache_dir):
    # An installed package in a site-packages this user cannot write: numba caches in NUMBA_CACHE_DIR if
    # set, else in the user's cache directory; the second process loads instead of compiling.
    root = Path(tempfile.mkdtemp(prefix="dask-prefetch-kernels-"))
    try:
        package = root / "site-packages" / "pkg"
        package.mkdir(parents=True)
        module = package / "kernels.py"
        shutil.copy(KERNELS, module)
        module.chmod(0o444)
        package.chmod(0o555)
        home = root / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
        env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
        expected = home / ".cache" / "numba"
        if numba_cache_dir:
            env["NUMBA_CACHE_DIR"] = str(root / "numba-cache")
            expected = root / "numba-cache"

        first = _warm_in_a_new_process(module, env)
        assert first["how"] == "compiled", first
        assert first["cache_dir"] and Path(first["cache_dir"]).is_relative_to(expected), first
        assert any(Path(first["cache_dir"]).glob("*.nbi")), "no cache index written"
        assert sorted(p.name for p in package.iterdir()) == ["kernels.py"]  # nothing written in the package

        second = _warm_in_a_new_process(module, env)
        assert second["how"] == "loaded", second
        assert second["cache_dir"] == first["cache_dir"]
    finally:
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(root)


def test_warm_reports_what_it_did_and_the_kernels_work():
    first = kernels.warm()
    assert first.how in ("compiled", "loaded", "ready"), first
    again = kernels.warm()
    assert again.how == "ready" and again.seconds < 0.01
    assert kernels.compiled() is not None


def test_the_worker_plugin_warms_the_kernels_in_its_setup(tmp_path):
    # Fresh worker processes: before any task runs, their plugin's setup has the kernels ready.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:  # fmt: skip
        assert set(client.run(lambda: kernels._compiled is not None).values()) == {False}
        client.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[(str(tmp_path), 64)]))
        ready = client.run(lambda: kernels._compiled is not None)
        warmups = client.run(
            lambda dask_worker: next(
                p.warmup._asdict() for p in dask_worker.plugins.values() if isinstance(p, PrefetchWorkerPlugin)
            )
        )
    assert set(ready.values()) == {True}
    assert len(warmups) == 2
    for warmup in warmups.values():
        assert warmup["how"] in ("compiled", "loaded"), warmup
        assert warmup["seconds"] > 0
