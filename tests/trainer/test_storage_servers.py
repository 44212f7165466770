"""Artifacts on object storage (``spec.storage.uri``) against real S3 and GCS API servers.

Every test runs twice, once per server, each started on loopback by the ``server`` fixture and
reached through the trainer's own clients (pyarrow's S3 and GCS filesystems, the AWS and
google-cloud-cpp SDKs), the same ones it uses against AWS, MinIO or Google Cloud Storage.

* **s3**: moto in server mode (``moto_server`` from .venv-s3, scripts/setup-s3.sh): the HTTP
  S3 API (PUT/GET/LIST/DELETE, multipart uploads). Leaves out authentication (any key is
  accepted), consistency delays and throttling.
* **gs**: gcp-storage-emulator (.venv-gcs, scripts/setup-gcs.sh), a Python server of the GCS
  JSON API, reached with ``storage.endpointUrl: http://...`` (anonymous). pyarrow uses these
  parts of the API, each checked by these tests through the server's answers:
  buckets.get and buckets.insert (https://cloud.google.com/storage/docs/json_api/v1/buckets),
  resumable uploads, a POST that opens a session then PUTs of 256 KiB-multiple chunks
  answered 308 until the last (https://cloud.google.com/storage/docs/performing-resumable-uploads),
  objects.get with ``alt=media`` for downloads and without for metadata
  (https://cloud.google.com/storage/docs/json_api/v1/objects/get), objects.list with
  ``prefix``, ``delimiter``, ``includeTrailingDelimiter`` and ``pageToken``
  (https://cloud.google.com/storage/docs/json_api/v1/objects/list), and objects.delete, with
  a ``generation`` when pyarrow deletes a directory's objects
  (https://cloud.google.com/storage/docs/json_api/v1/objects/delete). It leaves out
  authentication, serves one request at a time (a download held open without being read
  blocks every other request, so a reader's object cannot be deleted mid-read here), and has
  no consistency delays, throttling (429/503) or retries to exercise, no XML API and no gRPC.
  What it showed: pyarrow's one-level GCS listing drops the listing's ``prefixes`` (it reads
  ``items`` only), and its ``delete_dir`` ends with a DELETE of a ``dir/`` marker object
  that is 404 when none was written; runtime/storage.py allows for both.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from polya_trainer import spec as s
from polya_trainer.engine.local import run_file
from polya_trainer.runtime import storage
from polya_trainer.runtime.artifacts import write_manifest
from polya_trainer.runtime.hold import HOLD_ENV
from polya_trainer.stages import training as T
from polya_trainer.toy import write_demo_data
from testkit import reduced_run

ROOT = Path(__file__).resolve().parents[2]
# scheme: (server program, its set-up script, a path that answers once it serves)
PROGRAMS = {
    "s3": (ROOT / ".venv-s3" / "bin" / "moto_server", "scripts/setup-s3.sh", "/moto-api/"),
    "gs": (ROOT / ".venv-gcs" / "bin" / "gcp-storage-emulator", "scripts/setup-gcs.sh",
           "/storage/v1/b?project=polya"),
}


@dataclass(frozen=True)
class Server:
    """An object-store server on loopback: the scheme of its URIs and its endpoint URL."""

    scheme: str
    endpoint: str

    def new_bucket(self, name: str) -> str:
        """Create bucket `name`; returns a run's prefix in it."""
        if self.scheme == "s3":
            req = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        else:  # buckets.insert
            req = urllib.request.Request(
                f"{self.endpoint}/storage/v1/b?project=polya", method="POST",
                data=json.dumps({"name": name}).encode(),
                headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req).close()
        return f"{self.scheme}://{name}/runs/one"


def _command(scheme: str, program: Path, port: int, data: Path) -> list[str]:
    if scheme == "s3":
        return [str(program), "-H", "127.0.0.1", "-p", str(port)]
    return [str(program), "-d", str(data), "start", "-H", "127.0.0.1", "--port", str(port)]


@pytest.fixture(scope="module", params=sorted(PROGRAMS))
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An S3 or a GCS server on a free loopback port."""
    scheme = request.param
    program, setup, ready = PROGRAMS[scheme]
    if not program.exists():
        pytest.skip(f"the {scheme} test server is not set up (bash {setup})")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tmp = tmp_path_factory.mktemp(f"server-{scheme}")
    log = open(tmp / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(_command(scheme, program, port, tmp / "data"),
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}{ready}", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"{program.name} exited with {proc.returncode}")
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"{program.name} did not start")
    # Any key works with moto; the SDK must not look for instance metadata off loopback.
    keep = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_EC2_METADATA_DISABLED")}
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                      AWS_EC2_METADATA_DISABLED="true")
    try:
        yield Server(scheme, url)
    finally:
        for k, v in keep.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def keys(server: Server, uri: str) -> list[str]:
    """Every object key under `uri`, listed by the server (not through our code)."""
    store = storage.open_store(uri, server.endpoint)
    from pyarrow import fs as pafs

    infos = store.fs.get_file_info(pafs.FileSelector(store.root, recursive=True,
                                                     allow_not_found=True))
    return sorted(i.path[len(store.root) + 1:] for i in infos if i.type == pafs.FileType.File)


# --------------------------------------------------------------------------- (c) a racing reader


def _write_version(directory: Path, version: int, n: int) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    (directory / "data").mkdir(parents=True)
    for i in range(n):
        (directory / "data" / f"part-{i:03d}.txt").write_text(f"v{version} part {i}\n" * 50)
    write_manifest(directory, outputs={"version": str(version)})


def test_a_reader_racing_uploads_sees_a_stage_absent_or_whole(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer uploads a 40-object stage three times (versions 1, 2, 3, each over the last)
    while a reader polls read_stage, downloading what it is shown. Each observation is either
    None or one whole version: every object verified, all from the same version. The writer
    waits for the reader halfway through each upload and after it, so the reader looks at a
    half-written stage and at each whole one whatever the two threads' speeds."""
    uri = server.new_bucket("race")
    ep = server.endpoint
    store = storage.open_store(uri, ep)
    n = 40
    versions = {}
    for v in (1, 2, 3):
        _write_version(tmp_path / f"v{v}", v, n)
        versions[v] = tmp_path / f"v{v}"
    done = threading.Event()
    looked = threading.Condition()
    looks = 0
    seen: list[int | None] = []
    partial_listings = 0  # what a reader trusting the listing alone would have taken

    errors: list[BaseException] = []

    def read() -> None:
        try:
            observe()
        except BaseException as exc:  # re-raised by the test, not lost in the thread
            errors.append(exc)

    def observe() -> None:
        nonlocal partial_listings, looks
        i = 0
        while not done.is_set():
            dest = tmp_path / "reader" / str(i)
            body = storage.read_stage(uri, "polya", "generate", dest=dest, endpoint_url=ep)
            if body is None:
                seen.append(None)
                assert not dest.exists()  # nothing appears under the final name
            else:
                version = int(body["outputs"]["version"])
                files = sorted(p.name for p in (dest / "data").iterdir())
                assert len(files) == n
                assert {(dest / "data" / f).read_text() for f in files} == {
                    (versions[version] / "data" / f).read_text() for f in files}
                seen.append(version)
            listed = [k for k in keys(server, uri) if k.startswith("polya/generate/data/")]
            partial_listings += 0 < len(listed) < n
            i += 1
            with looked:
                looks += 1
                looked.notify_all()

    def reader_looks() -> None:
        """Wait until one whole observation has begun and ended after this point."""
        with looked:
            start = looks
            assert looked.wait_for(lambda: looks >= start + 2 or not reader.is_alive(), 120)

    put_file = storage._put_file

    def put_then_wait_halfway(store_: Any, local: Path, remote: str) -> Any:
        entry = put_file(store_, local, remote)
        if local.name == f"part-{n // 2:03d}.txt":
            reader_looks()  # manifest gone, half the objects new
        return entry

    monkeypatch.setattr(storage, "_put_file", put_then_wait_halfway)
    reader = threading.Thread(target=read)
    reader.start()
    try:
        for v in (1, 2, 3):
            storage.push_dir(store, versions[v], "polya/generate")
            reader_looks()  # the whole version
    finally:
        done.set()
        reader.join(timeout=120)
    assert not reader.is_alive()
    if errors:
        raise errors[0]
    final = storage.read_stage(uri, "polya", "generate", endpoint_url=ep)
    assert final is not None and final["outputs"]["version"] == "3"
    # The reader looked while objects were missing, and also saw whole versions; it never
    # saw anything else (asserted in the thread).
    assert partial_listings >= 1 and seen.count(None) >= 3  # partial: v1 only (same keys)
    assert {v for v in seen if v is not None} == {1, 2, 3}
    print(f"observations: {len(seen)}, absent: {seen.count(None)}, "
          f"partial listings: {partial_listings}")


def test_a_damaged_object_makes_the_stage_absent(server: Server, tmp_path: Path) -> None:
    uri = server.new_bucket("damaged")
    ep = server.endpoint
    store = storage.open_store(uri, ep)
    _write_version(tmp_path / "v", 1, 3)
    storage.push_dir(store, tmp_path / "v", "polya/generate")
    assert storage.read_stage(uri, "polya", "generate", endpoint_url=ep) is not None
    with store.fs.open_output_stream(store.path("polya/generate/data/part-001.txt")) as f:
        f.write(b"tampered")
    assert storage.read_stage(uri, "polya", "generate", endpoint_url=ep) is None
    assert storage.read_stage(uri, "polya", "generate", dest=tmp_path / "d",
                              endpoint_url=ep) is None
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------- (b) kill, resume


def _midtrain_spec(tmp: Path, model: Path, uri: str, endpoint: str) -> Path:
    spec = {"model": {"name": str(model), "dtype": "float32"}, "arms": ["polya"], "seed": 1,
            "storage": {"uri": uri, "endpointUrl": endpoint},
            "stages": {"midtrain": {"epochs": 1, "learningRate": 3e-3, "perDeviceBatchSize": 2,
                                    "gradientAccumulationSteps": 1, "maxLength": 256,
                                    "maxSteps": 24, "saveSteps": 2}}}
    s.PolyaRunSpec.model_validate(spec)
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": s.API_VERSION, "kind": s.KIND,
                                    "metadata": {"name": "t"}, "spec": spec}))
    return path


def _start_midtrain(spec_file: Path, workdir: Path,
                    hold: Path | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "trainer"),
               POLYA_PROGRESS_FILE=str(workdir.parent / f"{workdir.name}-progress.json"))
    if hold:  # held at the end of step 5: checkpoints 2 and 4 saved and uploaded
        env[HOLD_ENV] = f"5:{hold}"
    return subprocess.Popen(
        [sys.executable, "-m", "polya_trainer", "midtrain", "--spec", str(spec_file),
         "--workdir", str(workdir), "--arm", "polya"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _uploaded_steps(store: storage.Store) -> list[int]:
    """Steps of the checkpoints on the store that are complete and verify."""
    return [step for step, remote in storage.remote_checkpoints(store, "polya/midtrain/checkpoints")
            if storage.read_dir(store, remote) is not None]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_mid_training_then_resume_on_another_node(server: Server, tmp_path: Path,
                                                       tiny_model_dir: Path) -> None:
    """midtrain on node A (scratch A) uploads checkpoints as it saves them and is killed
    after at least one upload; node B starts from an empty scratch, downloads the generated
    data and the newest uploaded checkpoint, and finishes from there."""
    from test_midtrain import write_generated  # type: ignore[import-not-found]

    uri = server.new_bucket("resume")
    ep = server.endpoint
    store = storage.open_store(uri, ep)
    seed = tmp_path / "seed"
    storage.push_dir(store, write_generated(seed, "polya", n=32), "polya/generate")
    spec_file = _midtrain_spec(tmp_path, tiny_model_dir, uri, ep)

    node_a = tmp_path / "node-a"
    held = tmp_path / "held"
    proc = _start_midtrain(spec_file, node_a, hold=held)
    deadline = time.monotonic() + 300
    while not held.exists():
        if proc.poll() is not None:
            pytest.fail(f"training ended first:\n{proc.stdout.read().decode()[-3000:]}")
        assert time.monotonic() < deadline, "step 5 was never reached"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    uploaded = _uploaded_steps(store)
    assert uploaded and max(uploaded) == 4
    assert storage.read_stage(uri, "polya", "midtrain", endpoint_url=ep) is None
    shutil.rmtree(node_a)  # that node is gone

    node_b = tmp_path / "node-b"
    proc = _start_midtrain(spec_file, node_b)
    out = proc.communicate(timeout=400)[0].decode()
    assert proc.returncode == 0, out[-3000:]
    metrics = json.loads((node_b / "polya" / "midtrain" / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == max(uploaded), out[-2000:]
    assert metrics["global_step"] == 24 and metrics["steps_this_run"] == 24 - max(uploaded)
    # The finished stage is on the store; so is the last checkpoint (rotation: at most 2).
    done = storage.read_stage(uri, "polya", "midtrain", endpoint_url=ep)
    assert done is not None and "model/model.safetensors" in done["objects"]
    assert _uploaded_steps(store)[0] == 24 and len(_uploaded_steps(store)) <= 2
    state = json.loads((T.newest_checkpoint(node_b / "polya" / "midtrain" / "checkpoints")
                        / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h][:2] == [1, 2]


# --------------------------------------------------------------------------- (a) a whole run


def _toy_run(name: str, model: Path, data: dict[str, Path], uri: str,
             endpoint: str) -> dict[str, Any]:
    body = reduced_run(name, model, data, ["polya"])
    body["spec"]["storage"] = {"uri": uri, "endpointUrl": endpoint}
    return body


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_whole_run_on_the_store_then_a_fresh_node_reuses_it(
        server: Server, tmp_path: Path, toy_model_dir: Path,
        capsys: pytest.CaptureFixture) -> None:
    uri = server.new_bucket("whole")
    ep = server.endpoint
    data = write_demo_data(tmp_path / "data", train=8, rl=16, evaluation=6)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_toy_run("store", toy_model_dir, data, uri, ep)))
    assert run_file(path, workdir=tmp_path / "scratch-1", quiet=True) == 0

    listed = keys(server, uri)
    for stage in s.STAGES:
        body = storage.read_stage(uri, "polya", stage, endpoint_url=ep)
        assert body is not None, (stage, listed)
        # read_stage verified each listed object's sha256; the server lists them all.
        assert {f"polya/{stage}/{rel}" for rel in body["objects"]} <= set(listed)
        local = tmp_path / "scratch-1" / "polya" / stage
        assert body["files"] == json.loads((local / "MANIFEST.json").read_text())["files"]
    gen = storage.read_stage(uri, "polya", "generate", endpoint_url=ep)
    assert any(k.startswith("data/") and k.endswith(".parquet") for k in gen["objects"])
    for stage in ("midtrain", "rl"):
        body = storage.read_stage(uri, "polya", stage, endpoint_url=ep)
        assert "model/model.safetensors" in body["objects"]
        assert any(k.startswith(f"polya/{stage}/checkpoints/checkpoint-") for k in listed)
        assert not any(k.startswith("checkpoints/") for k in body["objects"])
    assert "report.md" in storage.read_dir(storage.open_store(uri, ep), "report")["objects"]

    # A fresh node (empty scratch): every stage comes from the store and is skipped.
    before = {st: storage.read_stage(uri, "polya", st, endpoint_url=ep) for st in s.STAGES}
    fresh = tmp_path / "scratch-2"
    assert run_file(path, workdir=fresh, quiet=True) == 0
    for stage in s.STAGES:
        local = json.loads((fresh / "polya" / stage / "MANIFEST.json").read_text())
        assert local == before[stage], stage  # downloaded (it lists the objects), not redone
        assert storage.read_stage(uri, "polya", stage, endpoint_url=ep) == before[stage]
    assert not (fresh / "polya" / "midtrain" / "checkpoints").exists()  # no training ran
    assert (fresh / "polya" / "midtrain" / "model" / "model.safetensors").read_bytes() == (
        tmp_path / "scratch-1" / "polya" / "midtrain" / "model" / "model.safetensors"
    ).read_bytes()
