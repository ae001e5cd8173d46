"""Google Cloud Storage and Azure Blob Storage, each against its real emulator on loopback.

GCS: fake-gcs-server (``dask_prefetch.testing.LocalGCSServer``) through gcsfs. Azure: Azurite
(``dask_prefetch.testing.LocalAzuriteServer``, installed with npm on first use) through adlfs, as
``abfs://`` and ``az://``. Each passes the contract suite, ``read_tractogram`` reads nibabel's test
files from it bit for bit as nibabel does, and an object replaced after it was pinned raises
``FileExpired`` (checked by the store's version token: GCS ``generation``, Azure ``etag``).
Objects are put with the store's own client, never through the code under test.
"""

from __future__ import annotations

import os

# Before gcsfs is first imported: its default filesystem probes each bucket over gRPC for 60 s
# against an emulator (see dask_prefetch/testing/gcs.py).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import importlib  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

import adlfs  # noqa: E402
import gcsfs  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from nibabel.testing import data_path  # noqa: E402
from s3fs.utils import FileExpired  # noqa: E402

from dask_prefetch import PrefetchFileSystem, read_tractogram  # noqa: E402
from dask_prefetch.testing import LocalAzuriteServer, LocalGCSServer  # noqa: E402
from dask_prefetch.testing.contract import ContractStore, PrefetchFileSystemContract  # noqa: E402

SYNC = {"scheduler": "sync"}
KiB = 1024


@pytest.fixture(scope="module")
def azurite() -> Iterator[LocalAzuriteServer]:
    with LocalAzuriteServer() as server:
        yield server


@pytest.fixture(scope="module")
def gcs_server() -> Iterator[LocalGCSServer]:
    with LocalGCSServer() as server:
        yield server


@dataclass
class Cloud:
    """One emulated store: its protocol, its options, its own client and a fresh bucket/container."""

    protocol: str
    options: dict[str, Any]
    raw: Any  # the store's own fsspec filesystem (adlfs / gcsfs), for puts and listings
    bucket: str
    version_key: str  # the info key the version token must come from

    def url(self, name: str) -> str:
        return f"{self.protocol}://{self.bucket}/{name}"

    def snapshot(self) -> Callable[[], Any]:
        def snapshot() -> Any:
            self.raw.invalidate_cache()
            found = self.raw.find(self.bucket, detail=True).values()
            return sorted((i["name"], str(i[self.version_key])) for i in found), sorted(self.raw.ls("", refresh=True))

        return snapshot


def azure_cloud(server: LocalAzuriteServer, protocol: str = "abfs") -> Cloud:
    raw = adlfs.AzureBlobFileSystem(**server.storage_options(), skip_instance_cache=True)
    container = f"c{uuid.uuid4().hex[:16]}"  # lower-case letters and digits, 3-63 long
    raw.mkdir(container)
    return Cloud(protocol, server.storage_options(), raw, container, "etag")


def gcs_cloud(server: LocalGCSServer) -> Cloud:
    raw = gcsfs.GCSFileSystem(**server.storage_options(), skip_instance_cache=True)
    assert "Extended" not in type(raw).__name__, "gcsfs was imported before GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false"
    bucket = f"b{uuid.uuid4().hex[:16]}"
    raw.mkdir(bucket)
    return Cloud("gs", server.storage_options(), raw, bucket, "generation")


@pytest.fixture(params=["abfs", "az", "gs"])
def cloud(request) -> Cloud:
    if request.param == "gs":
        return gcs_cloud(request.getfixturevalue("gcs_server"))
    return azure_cloud(request.getfixturevalue("azurite"), request.param)


def contract_store(cloud: Cloud, tiers) -> ContractStore:
    fs = PrefetchFileSystem(target_protocol=cloud.protocol, target_options=cloud.options, skip_instance_cache=True)
    return ContractStore(fs, cloud.raw.pipe_file, cloud.snapshot(), f"{cloud.protocol}://{cloud.bucket}", tiers(1))


class TestPrefetchOverAzure(PrefetchFileSystemContract):
    """adlfs against Azurite's blob service."""

    @pytest.fixture
    def store(self, azurite, tiers):
        return contract_store(azure_cloud(azurite), tiers)


class TestPrefetchOverGCS(PrefetchFileSystemContract):
    """gcsfs against fake-gcs-server."""

    @pytest.fixture
    def store(self, gcs_server, tiers):
        return contract_store(gcs_cloud(gcs_server), tiers)


@pytest.mark.parametrize("server_class", [LocalAzuriteServer, LocalGCSServer])
def test_a_server_stops_with_its_context_and_its_port_closes(server_class) -> None:
    with server_class() as server:
        port, process = server.port, server._proc
        assert server.running and f":{port}" in repr(server)
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not server.running and process.poll() is not None and "stopped" in repr(server)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    server.stop()  # idempotent


def nib_bytes(name: str) -> bytes:
    with open(os.path.join(data_path, name), "rb") as f:
        return f.read()


@pytest.mark.parametrize("name", ["standard.trk", "standard.tck"])
def test_read_tractogram_equals_nibabel(cloud: Cloud, name: str, tiers) -> None:
    cloud.raw.pipe_file(f"{cloud.bucket}/sub-01/{name}", nib_bytes(name))
    expected = nib.streamlines.load(os.path.join(data_path, name)).streamlines
    suffix = name.rsplit(".", 1)[1]
    for url in (cloud.url(f"sub-01/{name}"), cloud.url(f"sub-*/*.{suffix}")):  # a path, and a glob listed there
        tg = read_tractogram(url, storage_options=cloud.options, prefetch_storage=tiers(8))
        points, lengths = tg.points.compute(**SYNC), tg.n_points.compute(**SYNC)
        assert points.dtype == np.float32 and points.tobytes() == expected.get_data().tobytes()
        np.testing.assert_array_equal(lengths, expected._lengths)


def test_the_version_token_is_the_store_s_and_a_replaced_object_raises(cloud: Cloud, tiers) -> None:
    """GCS pins ``generation`` (a rewrite with the very same bytes is a new one), Azure ``etag``."""
    path = f"{cloud.bucket}/big.bin"
    body = np.random.default_rng(1).bytes(256 * KiB)
    cloud.raw.pipe_file(path, body)
    fs = PrefetchFileSystem(target_protocol=cloud.protocol, target_options=cloud.options, skip_instance_cache=True)
    cloud.raw.invalidate_cache()
    info = cloud.raw.info(path)
    assert fs.source.version(info)[0] == str(info[cloud.version_key])
    small = dict(block_size=32 * KiB, part_size=32 * KiB, concurrency=1)
    with fs.open(cloud.url("big.bin"), prefetch_storage=[(tiers(1)[0][0], 0.0625)], **small) as f:
        assert f.read(1000) == body[:1000]
        cloud.raw.pipe_file(path, body if cloud.protocol == "gs" else body[::-1])  # same size
        read = bytearray(body[:1000])
        with pytest.raises(FileExpired):
            while piece := f.read(16 * KiB):
                read += piece
        assert bytes(read) == body[: len(read)] and len(read) < len(body)


def test_read_tractogram_raises_when_a_file_changes_after_the_graph_is_built(cloud: Cloud, tiers) -> None:
    """Tasks read the versions pinned at graph build: one replaced since fails, never reads the new one."""
    cloud.raw.pipe_file(f"{cloud.bucket}/t.trk", nib_bytes("standard.trk"))
    tg = read_tractogram(cloud.url("t.trk"), storage_options=cloud.options, prefetch_storage=tiers(8))
    data = bytearray(nib_bytes("standard.trk"))
    data[-12:] = np.float32([1, 2, 3]).tobytes()  # the last point moves: same size, other bytes
    cloud.raw.pipe_file(f"{cloud.bucket}/t.trk", bytes(data))
    with pytest.raises(FileExpired):
        tg.points.compute(**SYNC)


@pytest.mark.parametrize(
    "url, package, extra",
    [("abfs://c/k.trk", "adlfs", "azure"), ("az://c/k.trk", "adlfs", "azure"), ("gs://b/k.trk", "gcsfs", "gcs")],
)
def test_a_protocol_whose_package_cannot_be_imported_names_it_at_graph_build(monkeypatch, url, package, extra) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # `import adlfs` now fails, as when it is not installed
    registry = importlib.import_module("fsspec.registry")
    for protocol, cls in list(registry.registry.items()):  # forget classes fsspec imported for earlier tests
        if cls.__module__.split(".")[0] == package:
            monkeypatch.delitem(registry._registry, protocol)
    protocol = url.split("://")[0]
    message = rf"{protocol}:// paths .*: {protocol}:// needs {package}: pip install {package} \(or 'dask-prefetch\[{extra}\]'\)"
    with pytest.raises(ImportError, match=message):
        read_tractogram(url)
