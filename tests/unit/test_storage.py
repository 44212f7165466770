"""storage.uri without a server: the upload protocol on a file:// store, the stage inputs,
the spec fields and the pods' credentials (by reference only). The tests against S3 and GCS
API servers are in tests/trainer/test_storage_servers.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import kubernetes_validate
import pytest
from polya_operator import resources as r
from polya_trainer import spec as s
from polya_trainer.runtime import storage
from polya_trainer.runtime.artifacts import MANIFEST, read_manifest, write_manifest
from polya_trainer.runtime.workspace import Workspace
from polya_trainer.stages import training as T

META = {"name": "r1", "namespace": "team", "uid": "1234"}


def run_spec(tmp: Path, **storage_kw: str) -> s.PolyaRunSpec:
    return s.parse_spec({"model": {"name": "org/m"}, "arms": ["vanilla", "star", "polya"],
                         "storage": {"uri": (tmp / "store").as_uri(), **storage_kw}})


def stage(workdir: Path, arm: str, name: str, text: str = "x") -> Path:
    d = workdir / arm / name
    (d / "data").mkdir(parents=True)
    (d / "data" / "a.txt").write_text(text)
    (d / ".tmp-junk").write_text("not uploaded")
    write_manifest(d, outputs={"data": f"{arm}/{name}/data"})
    return d


def test_upload_writes_objects_then_a_manifest_that_lists_them(tmp_path: Path) -> None:
    store = storage.open_store((tmp_path / "store").as_uri())
    local = stage(tmp_path / "w", "polya", "generate")
    body = storage.push_dir(store, local, "polya/generate")
    remote = tmp_path / "store" / "polya" / "generate"
    assert sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file()) \
        == ["MANIFEST.json", "data/a.txt"]
    assert set(body["objects"]) == {"data/a.txt"}
    assert body["files"] == read_manifest(local)["files"]  # the local manifest, extended
    # Downloaded elsewhere: a complete, verifiable stage directory.
    got = storage.read_stage(store_uri(tmp_path), "polya", "generate", dest=tmp_path / "n")
    assert got == body and read_manifest(tmp_path / "n", verify=True) is not None


def store_uri(tmp: Path) -> str:
    return (tmp / "store").as_uri()


@pytest.mark.parametrize("damage", ["no-manifest", "missing", "changed", "foreign-manifest"])
def test_an_incomplete_remote_stage_is_absent(tmp_path: Path, damage: str) -> None:
    store = storage.open_store(store_uri(tmp_path))
    storage.push_dir(store, stage(tmp_path / "w", "polya", "generate"), "polya/generate")
    remote = tmp_path / "store" / "polya" / "generate"
    if damage == "no-manifest":
        (remote / MANIFEST).unlink()
    elif damage == "missing":
        (remote / "data" / "a.txt").unlink()
    elif damage == "changed":
        (remote / "data" / "a.txt").write_text("y")  # same size, other content
    else:  # a plain local manifest copied over: it lists no objects
        (remote / MANIFEST).write_text(json.dumps({"files": {}}))
    assert storage.read_stage(store_uri(tmp_path), "polya", "generate") is None
    assert storage.read_stage(store_uri(tmp_path), "polya", "generate",
                              dest=tmp_path / "n") is None
    assert not (tmp_path / "n").exists()


def test_inputs_of_each_stage() -> None:
    sp = s.parse_spec({"model": {"name": "m"}, "arms": ["vanilla", "polya"]})
    assert storage.inputs(sp, "polya", "generate") == []
    assert storage.inputs(sp, "polya", "midtrain") == [("polya", "generate")]
    assert storage.inputs(sp, "vanilla", "rl") == []
    assert storage.inputs(sp, "polya", "evaluate") == [
        ("polya", "generate"), ("polya", "midtrain"), ("polya", "rl"), ("vanilla", "evaluate")]
    assert storage.inputs(sp, "vanilla", "evaluate") == [
        ("vanilla", "rl"), ("polya", "generate"), ("polya", "evaluate")]


def test_pull_fetches_inputs_or_the_finished_stage_and_push_uploads(tmp_path: Path) -> None:
    sp = run_spec(tmp_path)
    node_a, node_b = tmp_path / "a", tmp_path / "b"
    stage(node_a, "polya", "generate")
    storage.push(sp, "polya", "generate", node_a)
    storage.pull(sp, "polya", "midtrain", node_b)  # the input comes down
    assert read_manifest(node_b / "polya" / "generate", verify=True) is not None
    assert not (node_b / "polya" / "midtrain").exists()
    stage(node_b, "polya", "midtrain")
    storage.push(sp, "polya", "midtrain", node_b)
    before = (tmp_path / "store" / "polya" / "midtrain" / MANIFEST).stat().st_mtime_ns
    storage.push(sp, "polya", "midtrain", node_b)  # unchanged: not uploaded again
    assert (tmp_path / "store" / "polya" / "midtrain" / MANIFEST).stat().st_mtime_ns == before
    storage.pull(sp, "polya", "midtrain", node_a)  # finished on the store: comes down whole
    assert read_manifest(node_a / "polya" / "midtrain", verify=True) is not None


def fake_checkpoint(ckpts: Path, step: int) -> None:
    d = ckpts / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (d / "model.safetensors").write_bytes(bytes([step]) * 64)
    T.mark_checkpoint(ckpts, step)


def test_checkpoints_upload_as_saved_follow_rotation_and_resume_elsewhere(
        tmp_path: Path) -> None:
    sp = run_spec(tmp_path)
    node_a, node_b = tmp_path / "a", tmp_path / "b"
    ckpts = Workspace(node_a).checkpoints("polya", "midtrain")
    storage.pull(sp, "polya", "midtrain", node_a)  # makes this stage's store the active one
    for step in (2, 4, 6):
        fake_checkpoint(ckpts, step)
        if step == 6:  # the Trainer's rotation (save_total_limit 2) removed checkpoint-2
            shutil.rmtree(ckpts / "checkpoint-2")
        storage.checkpoint_saved(ckpts, step)
    store = storage.open_store(store_uri(tmp_path))
    assert [st for st, _ in storage.remote_checkpoints(store, "polya/midtrain/checkpoints")] \
        == [6, 4]
    storage.pull(sp, "polya", "midtrain", node_b)
    newest = T.newest_checkpoint(Workspace(node_b).checkpoints("polya", "midtrain"))
    assert newest is not None and T.checkpoint_step(newest) == 6
    assert (newest / "model.safetensors").read_bytes() == bytes([6]) * 64


def test_without_a_uri_nothing_happens(tmp_path: Path) -> None:
    sp = s.parse_spec({"model": {"name": "m"}})
    stage(tmp_path, "polya", "generate")
    storage.pull(sp, "polya", "midtrain", tmp_path)
    storage.push(sp, "polya", "generate", tmp_path)
    storage.checkpoint_saved(tmp_path / "polya" / "midtrain" / "checkpoints", 2)
    assert [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*"))] == [
        "polya", "polya/generate", "polya/generate/.tmp-junk", "polya/generate/MANIFEST.json",
        "polya/generate/data", "polya/generate/data/a.txt"]


def test_spec_fields() -> None:
    ok = s.parse_spec({"model": {"name": "m"}, "storage": {
        "uri": "s3://b/p", "endpointUrl": "http://minio.storage:9000",
        "credentialsSecret": "s3-keys"}})
    assert ok.storage.endpoint_url == "http://minio.storage:9000"
    for bad in ({"uri": "az://c/p"}, {"uri": "s3://b/p", "endpointUrl": "minio:9000"},
                {"uri": "s3://b/p", "credentialsSecret": "Bad_Name"}):
        with pytest.raises(s.SpecError):
            s.parse_spec({"model": {"name": "m"}, "storage": bad})


@pytest.mark.parametrize(("endpoint", "netloc", "scheme", "anonymous"), [
    ("http://127.0.0.1:4443", "127.0.0.1:4443", "http", True),
    ("https://storage.example.com", "storage.example.com", "https", False)])
def test_a_gs_endpoint_gets_credentials_over_https_only(
        endpoint: str, netloc: str, scheme: str, anonymous: bool) -> None:
    store = storage.open_store("gs://bucket/runs/one", endpoint)
    options = store.fs.__reduce__()[1][0]  # the options pyarrow pickles a GcsFileSystem with
    assert store.fs.type_name == "gcs" and store.root == "bucket/runs/one"
    assert (options["endpoint_override"], options["scheme"], options["anonymous"]) == (
        netloc, scheme, anonymous)


def test_pods_get_store_credentials_only_by_reference() -> None:
    sp = s.parse_spec({"model": {"name": "org/m"}, "storage": {
        "uri": "s3://b/p", "endpointUrl": "http://minio:9000", "credentialsSecret": "s3-keys"}})
    job = r.job(META, sp, "polya", "rl", 0, image="img:1")
    kubernetes_validate.validate(job, "1.32.0", strict=True)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert "value" not in env[key]
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "s3-keys"
        assert env[key]["valueFrom"]["secretKeyRef"]["key"] == key
    assert env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    vols = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in vols["workspace"]  # scratch; the store holds the artifacts
    # Workload identity: nothing mounted, no key variables.
    plain = s.parse_spec({"model": {"name": "org/m"}, "storage": {"uri": "gs://b/p"}})
    names = {e["name"] for e in r.job(META, plain, "polya", "rl", 0, image="img:1")[
        "spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


@pytest.mark.parametrize(("message", "absent"), [
    # pyarrow's S3 input stream fetches on read; these are the errors it raised there when a
    # writer had just deleted the manifest (tests/trainer/test_storage_servers.py's racing
    # reader, 2026-12), which must read as "no manifest yet".
    ("AWS Error NO_SUCH_KEY during GetObject operation: The specified key does not exist.",
     True),
    ("AWS Error RESOURCE_NOT_FOUND during GetObject operation", True),
    # Anything else is a real failure and is raised.
    ("AWS Error ACCESS_DENIED during GetObject operation: Access Denied", False),
])
def test_a_manifest_deleted_while_it_is_read_is_absent(message: str, absent: bool) -> None:
    """A stand-in for pyarrow's S3 input stream (pyarrow/_s3fs.pyx, S3FileSystem: the object
    is looked up on open, its body fetched on read), reduced to a read that raises; it leaves
    out everything else about the stream. The real race runs against S3 and GCS servers in
    tests/trainer/test_storage_servers.py."""
    class Stream:
        def __enter__(self) -> Stream:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def read(self) -> bytes:
            raise OSError(message)

    class FS:
        def open_input_stream(self, path: str) -> Stream:
            return Stream()

    store = type("Store", (), {"fs": FS()})()
    if absent:
        assert storage._read_json(store, "run/polya/generate/MANIFEST.json") is None
    else:
        with pytest.raises(OSError, match="ACCESS_DENIED"):
            storage._read_json(store, "run/polya/generate/MANIFEST.json")
