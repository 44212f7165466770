"""The node double itself (tests/node/kubelet.py) against the upstream behaviour it cites:
``$(VAR)`` expansion (third_party/forked/golang/expansion/expand_test.go cases and the doc page
"Define a Command and Arguments for a Container"), makeEnvironmentVariables, makeMounts'
termination log (a bind mount: EBUSY on rename, the last 4096 bytes read back), read-only
root, the securityContext's uid/gid, and what the trainer does on it (in place, SIGTERM)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from node.kubelet import (
    MAX_TERMINATION_MESSAGE,
    CreateContainerConfigError,
    Node,
    Pod,
    expand,
    unsupported,
)

ROOT = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(unsupported() is not None,
                              reason=str(unsupported()))


@pytest.mark.parametrize(("text", "want"), [
    ("$(VAR_A)", "A"),
    ("___$(VAR_B)___", "___B___"),
    ("$(VAR_A)-$(VAR_B)", "A-B"),
    ("$$(VAR_A)", "$(VAR_A)"),            # escaped
    ("$$$(VAR_A)", "$A"),
    ("$(VAR_UNKNOWN)", "$(VAR_UNKNOWN)"),  # undefined: left as written
    ("$(VAR_A", "$(VAR_A"),                # incomplete
    ("$VAR_A", "$VAR_A"),                  # not a reference
    ("$", "$"),
    ("--machine_rank=$(JOB_COMPLETION_INDEX)", "--machine_rank=3"),
])
def test_expand_like_the_kubelet(text: str, want: str) -> None:
    assert expand(text, {"VAR_A": "A", "VAR_B": "B", "JOB_COMPLETION_INDEX": "3"}) == want


def pod(command: list[str], **container: Any) -> Pod:
    spec: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                            "fsGroup": 1000},
        "volumes": [{"name": "spec", "configMap": {"name": "cm"}},
                    {"name": "ws", "persistentVolumeClaim": {"claimName": "claim"}},
                    {"name": "tmp", "emptyDir": {}},
                    {"name": "progress", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}],
        "containers": [{
            "name": "main", "command": command,
            "volumeMounts": [{"name": "spec", "mountPath": "/etc/polya", "readOnly": True},
                             {"name": "ws", "mountPath": "/workspace"},
                             {"name": "tmp", "mountPath": "/tmp"},
                             {"name": "progress", "mountPath": "/polya/progress"}],
            "securityContext": {"readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False},
            **container}]}
    return Pod({"name": "p-1", "namespace": "ns", "uid": f"uid-{time.monotonic_ns()}",
                "annotations": {"a": "b"}}, spec)


def node(tmp_path: Path, **kw: Any) -> Node:
    return Node.for_this_machine(tmp_path / "node", claims={"claim": tmp_path / "pv"},
                                 configmaps={"cm": {"run.yaml": "x: 1\n"}}, **kw)


def test_environment_from_values_fields_and_secrets(tmp_path: Path) -> None:
    n = node(tmp_path, secrets={"hf": {"tok": "s3cret"}})
    p = pod(["true"])
    env = n.environment(p, {"env": [
        {"name": "A", "value": "a"},
        {"name": "B", "value": "$(A)-b-$(LATER)"},  # only earlier variables expand
        {"name": "LATER", "value": "l"},
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "ANN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['a']"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "tok"}}},
        {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k",
                                                       "optional": True}}}]})
    assert env == {"A": "a", "B": "a-b-$(LATER)", "LATER": "l", "NAME": "p-1", "NS": "ns",
                   "ANN": "b", "IP": "127.0.0.1", "TOKEN": "s3cret"}
    with pytest.raises(CreateContainerConfigError, match='secret "missing" not found'):
        n.environment(p, {"env": [{"name": "T", "valueFrom": {"secretKeyRef": {
            "name": "missing", "key": "tok"}}}]})


@needs_root
def test_container_sees_the_node(tmp_path: Path) -> None:
    """uid/gid, read-only root, writable volumes, read-only configMap, and the termination
    log as a bind mount: rename onto it fails with EBUSY, writing in place works."""
    script = (
        "import errno, json, os\n"
        "T = '/polya/progress/progress.json'\n"
        "out = {'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups()}\n"
        "def tryit(f):\n"
        "    try:\n"
        "        f(); return 'ok'\n"
        "    except OSError as e:\n"
        "        return errno.errorcode[e.errno]\n"
        "out['root'] = tryit(lambda: open('/x', 'w'))\n"
        "out['spec'] = tryit(lambda: open('/etc/polya/new', 'w'))\n"
        "out['ws'] = tryit(lambda: open('/workspace/f', 'w').write('w'))\n"
        "out['tmp'] = tryit(lambda: open('/tmp/f', 'w').write('t'))\n"
        "open('/polya/progress/t', 'w').write('{}')  # a sibling, as the old code did\n"
        "out['rename'] = tryit(lambda: os.replace('/polya/progress/t', T))\n"
        "out['yaml'] = open('/etc/polya/run.yaml').read()\n"
        "out['argv'] = os.environ['MSG']\n"
        "fd = os.open(T, os.O_WRONLY | os.O_TRUNC)\n"
        "os.write(fd, json.dumps(out).encode()); os.close(fd)\n")
    n = node(tmp_path)
    # The termination path inside the progress emptyDir, as the operator rendered it before
    # issue 13: the kubelet's bind mount lands on top of the volume's file.
    res = n.run(pod([sys.executable, "-c", script],
                    terminationMessagePath="/polya/progress/progress.json",
                    env=[{"name": "MSG", "valueFrom": {"fieldRef": {
                        "fieldPath": "metadata.name"}}}]), timeout=120)
    assert res.exit_code == 0, res.log
    out = json.loads(res.message)
    assert (out["uid"], out["gid"]) == (1000, 1000) and 1000 in out["groups"]
    assert out["root"] == "EROFS" and out["spec"] == "EROFS"
    assert out["ws"] == "ok" and out["tmp"] == "ok"
    assert out["rename"] == "EBUSY"  # what killed every stage before issue 13
    assert out["yaml"] == "x: 1\n" and out["argv"] == "p-1"
    assert (tmp_path / "pv" / "f").read_text() == "w"  # the claim's host directory


@needs_root
def test_termination_message_is_the_last_4096_bytes(tmp_path: Path) -> None:
    res = node(tmp_path).run(pod(["sh", "-c", "printf 'a%.0s' $(seq 1000) > /dev/termination-log;"
                                  " printf 'b%.0s' $(seq 4096) >> /dev/termination-log;"
                                  " exit 3"]), timeout=60)
    assert res.exit_code == 3 and res.reason == "Error"
    assert res.message == "b" * MAX_TERMINATION_MESSAGE


@needs_root
def test_run_as_non_root_refuses_uid_0(tmp_path: Path) -> None:
    p = pod(["true"])
    p.spec["securityContext"]["runAsUser"] = 0
    res = node(tmp_path).run(p)
    assert res.reason == "CreateContainerConfigError" and "runAsNonRoot" in res.message


@needs_root
def test_trainer_termination_message_on_sigterm(tmp_path: Path) -> None:
    """The trainer's Reporter in a container: SIGTERM (the kubelet's first step of killing a
    container) leaves a Terminated message in the bind-mounted log."""
    code = ("import time\n"
            "from polya_trainer.runtime.progress import Reporter\n"
            "r = Reporter('generate', 'polya')\n"
            "r.install_sigterm()\n"
            "r.start(total=10)\n"
            "r.update(done=4)\n"
            "open('/polya/progress/ready', 'w').close()\n"
            "time.sleep(120)\n")
    n = node(tmp_path)
    n.image_env["PYTHONPATH"] = f"{ROOT}/trainer"
    p = pod(["python", "-c", code], env=[
        {"name": "POLYA_PROGRESS_FILE", "value": "/polya/progress/progress.json"},
        {"name": "POLYA_TERMINATION_MESSAGE_PATH", "value": "/dev/termination-log"}])
    p.spec["volumes"][3] = {"name": "progress", "emptyDir": {}}  # visible from the host
    running = n.start(p)
    ready = n.root / "pods" / p.metadata["uid"] / "volumes" / "kubernetes.io~empty-dir" / \
        "progress" / "ready"
    deadline = time.monotonic() + 120
    while not ready.exists() and running.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    running.terminate()
    res = running.wait(60)
    assert res.exit_code == 143, res.log
    msg = json.loads(res.message)
    assert msg["state"] == "Terminated" and msg["reason"] == "SIGTERM" and msg["progress"] == 40
    assert len(res.termination_file.read_bytes()) <= MAX_TERMINATION_MESSAGE
