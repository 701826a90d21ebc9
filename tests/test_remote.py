"""Remote output through fsspec: shards written locally, uploaded atomically (memory://, file://, and
s3:// on a local S3-compatible server, moto, bound to 127.0.0.1)."""

import copy
import hashlib
import json
import uuid
from pathlib import Path

import fsspec
import pytest
import yaml

from dmsfactory.datasets.remote import RemoteDataset, RemoteOutputError, is_url, upload_dataset
from dmsfactory.flows.deploy import free_port, shared_server
from dmsfactory.plan import make_plan
from dmsfactory.spec import parse_spec

pytestmark = pytest.mark.timeout(300)


def _tiny(tmp_path: Path):
    from conftest import TINY_SPEC

    d = copy.deepcopy(TINY_SPEC)
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(d))
    return p, parse_spec(d)


def _run(spec_path, out, staging, **kw):
    from prefect.settings import temporary_settings

    from dmsfactory.flows.factory import run_factory

    with temporary_settings(updates=shared_server().settings()):
        return run_factory(str(spec_path), out, None, kw.pop("overwrite", False), 1, False, staging=str(staging), **kw)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("remote")
    spec_path, spec = _tiny(tmp)
    url = f"memory://dmsf-test/{uuid.uuid4().hex[:8]}/ds"
    res = _run(spec_path, url, tmp / "staging1")
    return {"tmp": tmp, "spec_path": spec_path, "spec": spec, "url": url, "res": res}


def test_flow_writes_to_a_url_through_local_staging(memory_run):
    url, spec, res = memory_run["url"], memory_run["spec"], memory_run["res"]
    fs, root = fsspec.core.url_to_fs(url)
    m = json.loads(fs.cat(f"{root}/manifest.json"))
    assert res["manifest_path"] == f"{url}/manifest.json" and res["card"] == f"{url}/README.md"
    assert m["spec_hash"] == spec.content_hash() and m["counts"] == res["counts"]
    for s in m["shards"]:  # every shard listed in the manifest is there, byte for byte
        assert _sha(fs.cat(f"{root}/{s['path']}")) == s["sha256"]
    assert fs.exists(f"{root}/README.md") and fs.exists(f"{root}/card/sample_grid.png")
    from dmsfactory.pipeline import plan_jobs

    assert len(fs.ls(f"{root}/.progress", detail=False)) == len(plan_jobs(spec)) == res["batches"]
    assert not [p for p in fs.find(root) if ".partial" in p]
    local = memory_run["tmp"] / "staging1"
    assert {s["sha256"] for s in m["shards"]} == {
        json.loads(p.read_text())["shard"]["sha256"] for p in (local / ".progress").glob("*.json")
    }


def test_rerun_from_another_machine_reuses_remote_batches(memory_run):
    """A fresh staging directory (another machine): finished batches are pulled, not remade or re-uploaded."""
    url = memory_run["url"]
    fs, root = fsspec.core.url_to_fs(url)
    tars = sorted(p for p in fs.find(root) if p.endswith(".tar"))
    before = {p: fs.info(p)["created"] for p in tars}
    res = _run(memory_run["spec_path"], url, memory_run["tmp"] / "staging2")
    assert res["reused"] == res["batches"] and res["counts"] == memory_run["res"]["counts"]
    assert {p: fs.info(p)["created"] for p in tars} == before  # nothing uploaded again


def test_lost_remote_shard_is_made_again(memory_run):
    url, spec = memory_run["url"], memory_run["spec"]
    fs, root = fsspec.core.url_to_fs(url)
    m = json.loads(fs.cat(f"{root}/manifest.json"))
    victim = m["shards"][0]
    fs.pipe(f"{root}/{victim['path']}", b"corrupted")  # a damaged object remotely
    res = _run(memory_run["spec_path"], url, memory_run["tmp"] / "staging3")
    assert res["reused"] == res["batches"] - 1
    assert _sha(fs.cat(f"{root}/{victim['path']}")) == victim["sha256"]  # same bytes as before: deterministic
    # every planned key exactly once across the remote shards and quarantine shards
    import io
    import tarfile

    m2 = json.loads(fs.cat(f"{root}/manifest.json"))
    got = []
    for s in m2["shards"] + m2["quarantine"]:
        with tarfile.open(fileobj=io.BytesIO(fs.cat(f"{root}/{s['path']}"))) as tf:
            got += sorted({n.name.split(".")[0] for n in tf.getmembers()})
    assert sorted(got) == sorted(e["key"] for e in make_plan(spec))


def test_other_spec_at_the_same_url_is_refused(memory_run, tmp_path):
    from conftest import TINY_SPEC

    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**copy.deepcopy(TINY_SPEC), "seed": 99}))
    with pytest.raises(RemoteOutputError, match="another spec"):
        _run(other, memory_run["url"], tmp_path / "st")


def test_file_url_upload_is_atomic_and_complete(memory_run, tmp_path):
    """file:// goes through a .partial name + rename; a finished dataset uploads shards then manifest."""
    local = memory_run["tmp"] / "staging1"
    dest = tmp_path / "published"
    names = upload_dataset(local, dest.as_uri())
    m = json.loads((dest / "manifest.json").read_text())
    assert names and len(names) == len(list((local / ".progress").glob("*.json")))
    for s in m["shards"]:
        assert _sha((dest / s["path"]).read_bytes()) == s["sha256"]
    assert not list(dest.rglob("*.partial*"))
    rd = RemoteDataset(dest.as_uri(), staging=tmp_path / "st")
    assert not rd.atomic_put and set(rd.pull(m["spec_hash"])) == set(names)
    # an interrupted upload leaves only a .partial-* file: pull() ignores it and nothing partial is fetched
    (dest / "train-000000.tar.partial-deadbeef").write_bytes(b"half")
    (dest / ".progress" / "train-000009.json.partial-deadbeef").write_text("{")
    rd2 = RemoteDataset(dest.as_uri(), staging=tmp_path / "st2")
    assert set(rd2.pull(m["spec_hash"])) == set(names)
    assert not [p for p in (tmp_path / "st2").rglob("*") if "partial" in p.name]


def test_bad_urls_name_the_field(tmp_path):
    assert is_url("s3://b/p") and is_url("file:///x") and not is_url("out/ds") and not is_url("/abs/ds")
    with pytest.raises(RemoteOutputError, match="output.dir"):
        RemoteDataset("nosuchproto://bucket/x")
    with pytest.raises(RemoteOutputError, match="not a URL"):
        RemoteDataset("relative/path")
    with pytest.raises(RemoteOutputError, match="manifest.json"):
        upload_dataset(tmp_path, "memory://x/y")


@pytest.fixture
def s3(monkeypatch):
    from moto.server import ThreadedMotoServer

    port = free_port()
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # how a user points s3fs at an S3-compatible endpoint (also FSSPEC_S3_ENDPOINT_URL=... in the env)
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": f"http://127.0.0.1:{port}"})
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("dmsf-bucket")
    try:
        yield fs
    finally:
        fsspec.filesystem("s3").clear_instance_cache()
        srv.stop()


def test_flow_to_s3_compatible_server(s3, tmp_path):
    spec_path, spec = _tiny(tmp_path)
    url = "s3://dmsf-bucket/datasets/tiny"
    res = _run(spec_path, url, tmp_path / "staging")
    s3.invalidate_cache()
    m = json.loads(s3.cat("dmsf-bucket/datasets/tiny/manifest.json"))
    assert m["counts"] == res["counts"] and m["spec_hash"] == spec.content_hash()
    for s in m["shards"]:
        assert _sha(s3.cat(f"dmsf-bucket/datasets/tiny/{s['path']}")) == s["sha256"]
