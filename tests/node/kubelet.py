"""A node double: runs a rendered pod's container the way a kubelet and its runtime do.

There is no kubelet or container runtime here; this double reproduces, on this machine (as
root), the parts of a real node that a PolyaRun stage depends on:

* **Volumes** are host directories prepared by the kubelet and bind-mounted into a private
  mount namespace (``unshare --mount``): ``emptyDir`` is a fresh directory with mode 0777
  (``pkg/volume/emptydir/empty_dir.go``; ``medium: Memory`` is a tmpfs with ``sizeLimit``),
  a ``persistentVolumeClaim`` is the host directory bound to the claim, group-owned by
  ``fsGroup`` with the setgid bit (``pkg/volume/volume_linux.go: SetVolumeOwnership``), a
  ``configMap``/``secret`` is a directory with one file per key (mode ``defaultMode``,
  0644 by default).
* **The termination log** (``pkg/kubelet/kuberuntime/kuberuntime_container.go: makeMounts``):
  the kubelet creates a fresh host file per container instance, chmods it 0666 (so a
  non-root container can write it) and appends its bind mount onto
  ``terminationMessagePath`` *after* the volume mounts. After the container exits,
  ``getTerminationMessage`` reads it with ``tail.ReadAtMost(path,
  MaxContainerTerminationMessageLength)``: at most the **last** 4096 bytes. Because the path
  is a mount point, ``rename(2)`` onto it fails with EBUSY, as on a real node.
* **Read-only root** (``securityContext.readOnlyRootFilesystem``, runc's ``setReadonly``):
  the root is remounted read-only after the mounts; the host's own directories are always
  bound read-only (the image here is this machine's root filesystem, so the double never
  writes it).
* **User**: the process runs as ``runAsUser``/``runAsGroup`` (container over pod
  securityContext), with ``fsGroup`` and ``supplementalGroups`` as supplementary groups;
  ``runAsNonRoot`` with uid 0 fails with CreateContainerConfigError (``pkg/kubelet/
  kuberuntime/security_context_others.go: verifyRunAsNonRoot``).
* **Environment** (``pkg/kubelet/kubelet_pods.go: makeEnvironmentVariables``): ``value``
  with ``$(VAR)`` expanded against the variables defined before it, ``valueFrom.fieldRef``
  (``metadata.name``/``namespace``/``uid``, ``metadata.labels['k']``,
  ``metadata.annotations['k']``, ``spec.nodeName``, ``spec.serviceAccountName``,
  ``status.hostIP``, ``status.podIP``), ``secretKeyRef`` and ``configMapKeyRef`` (a missing
  object or key, unless ``optional``, is CreateContainerConfigError). Container variables
  override the image's (the runtime merges image env first).
* **Command** (``pkg/kubelet/container/helpers.go: ExpandContainerCommandAndArgs`` and
  ``third_party/forked/golang/expansion/expand.go: Expand``; the doc page "Define a Command
  and Arguments for a Container"): ``$(VAR)`` becomes the variable's value, ``$$`` an
  escaped ``$``, and a reference to an undefined variable is left as written.

Left out (say so where a test depends on it): pid, network, IPC, UTS and user namespaces (the
container shares this machine's network, so its ports are host ports, and ``/proc`` is the
host's); cgroup limits (CPU, memory, so no OOMKilled) and GPUs; seccomp and capability
bounding (capabilities are dropped only by the setuid to a non-root uid); image pulls (the
image is this machine's root filesystem, with the directories on the way to
``reachable`` paths, e.g. the Python interpreter under /root, made traversable as an image
would ship them); ``subPath``, projected and downward-API volumes, the atomic ``..data``
symlink layout of configMap volumes and their live updates; ``/etc/hosts``,
``/etc/hostname`` and ``/etc/resolv.conf`` management; probes, lifecycle hooks, restarts;
``terminationMessagePolicy: FallbackToLogsOnError`` (only ``File``).
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_TERMINATION_MESSAGE = 4096  # kubecontainer.MaxContainerTerminationMessageLength
HELPER = Path(__file__).with_name("_mountns.py")
_QUANTITY = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "K": 1000, "M": 1000**2, "G": 1000**3}


class CreateContainerConfigError(Exception):
    """The kubelet could not build the container's config (the pod's waiting reason)."""


def expand(text: str, *contexts: dict[str, str]) -> str:
    """``$(VAR)`` expansion as in third_party/forked/golang/expansion/expand.go."""
    out: list[str] = []
    i, checkpoint = 0, 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            out.append(text[checkpoint:i])
            rest = text[i + 1:]
            if rest[0] == "$":  # escaped operator
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:  # incomplete reference: kept
                    out.append("$(")
                    advance = 1
                else:
                    name = rest[1:close]
                    value = next((c[name] for c in contexts if name in c), f"$({name})")
                    out.append(value)
                    advance = close + 1
            else:
                out.append("$" + rest[0])
                advance = 1
            i += advance
            checkpoint = i + 1
        i += 1
    return "".join(out) + text[checkpoint:]


def _quantity(text: str) -> str:
    m = re.fullmatch(r"(\d+)([KMG]i?)?", str(text))
    if not m:
        raise ValueError(f"unsupported quantity {text!r}")
    return str(int(m.group(1)) * _QUANTITY.get(m.group(2) or "", 1))


@dataclass
class Pod:
    """What the kubelet knows of a pod: its object and its place on the node."""

    metadata: dict[str, Any]
    spec: dict[str, Any]
    pod_ip: str = "127.0.0.1"
    host_ip: str = "127.0.0.1"
    node_name: str = "node-double"

    @classmethod
    def from_job(cls, job: dict[str, Any], name: str | None = None,
                 annotations: dict[str, str] | None = None) -> Pod:
        """The pod the Job controller would create from the Job's template."""
        tmpl = job["spec"]["template"]
        jname = job["metadata"]["name"]
        labels = dict(tmpl.get("metadata", {}).get("labels") or {})
        labels.update({"batch.kubernetes.io/job-name": jname, "job-name": jname})
        meta = {"name": name or f"{jname}-{uuid.uuid4().hex[:5]}",
                "namespace": job["metadata"].get("namespace") or "default",
                "uid": str(uuid.uuid4()), "labels": labels,
                "annotations": dict(annotations or {})}
        return cls(meta, json.loads(json.dumps(tmpl["spec"])))


@dataclass
class Result:
    exit_code: int
    reason: str  # Completed | Error | CreateContainerConfigError | ContainerCannotRun
    message: str  # the termination message, as the kubelet reports it
    log: str
    termination_file: Path | None = None


@dataclass
class Node:
    """One node: a directory for the kubelet's state, the cluster objects it can read
    (claims bound to host directories, ConfigMaps, Secrets) and the image's env."""

    root: Path
    claims: dict[str, Path] = field(default_factory=dict)
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    image_env: dict[str, str] = field(default_factory=dict)
    reachable: list[str] = field(default_factory=list)
    # Host directories that are part of the "image" (this checkout and its venv); the
    # container's /tmp is empty, so those that live under /tmp are bound back in, read-only.
    image_dirs: list[str] = field(default_factory=list)

    @classmethod
    def for_this_machine(cls, root: Path, **kw: Any) -> Node:
        """The image is this machine: the current Python's bin first on PATH, and the real
        interpreter (a venv links to it) reachable for a non-root uid."""
        venv_bin = str(Path(sys.executable).parent)
        base = Path(os.path.realpath(sys.executable)).parent.parent
        env = {"PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8"}
        image = [str(Path(__file__).resolve().parents[2]), str(Path(sys.executable).parents[1])]
        return cls(root=root, image_env=env, reachable=[str(base)], image_dirs=image, **kw)

    # ---------------------------------------------------------------- env (kubelet_pods.go)
    def _field(self, pod: Pod, path: str) -> str:
        meta = pod.metadata
        m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
                  "metadata.uid": meta.get("uid"), "spec.nodeName": pod.node_name,
                  "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default"),
                  "status.hostIP": pod.host_ip, "status.podIP": pod.pod_ip,
                  "status.podIPs": pod.pod_ip, "status.hostIPs": pod.host_ip}
        if path not in simple:
            raise CreateContainerConfigError(f"unsupported fieldRef {path!r}")
        return str(simple[path] or "")

    def _key_ref(self, kind: str, store: dict[str, dict[str, str]], ref: dict[str, Any]
                 ) -> str | None:
        obj = store.get(ref["name"])
        if obj is None or ref["key"] not in obj:
            if ref.get("optional"):
                return None
            what = (f'{kind} "{ref["name"]}" not found' if obj is None else
                    f'couldn\'t find key {ref["key"]} in {kind} {ref["name"]}')
            raise CreateContainerConfigError(what)
        return obj[ref["key"]]

    def environment(self, pod: Pod, container: dict[str, Any]) -> dict[str, str]:
        """makeEnvironmentVariables: the container's variables in order."""
        env: dict[str, str] = {}
        for var in container.get("env") or []:
            name = var["name"]
            src = var.get("valueFrom")
            if not src:
                env[name] = expand(var.get("value", ""), env)
            elif "fieldRef" in src:
                env[name] = self._field(pod, src["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in src:
                value = self._key_ref("secret", self.secrets, src["secretKeyRef"])
                if value is not None:
                    env[name] = value
            elif "configMapKeyRef" in src:
                value = self._key_ref("configmap", self.configmaps, src["configMapKeyRef"])
                if value is not None:
                    env[name] = value
            else:
                raise CreateContainerConfigError(f"unsupported valueFrom in {name}")
        return env

    # ---------------------------------------------------------------- volumes
    def _volume_dir(self, pod_dir: Path, pod: Pod, vol: dict[str, Any], fs_group: int | None
                    ) -> dict[str, Any]:
        name = vol["name"]
        if "emptyDir" in vol:
            ed = vol["emptyDir"] or {}
            if ed.get("medium") == "Memory":
                out: dict[str, Any] = {"kind": "tmpfs"}
                if ed.get("sizeLimit"):
                    out["size"] = _quantity(ed["sizeLimit"])
                return out
            path = pod_dir / "volumes" / "kubernetes.io~empty-dir" / name
            path.mkdir(parents=True)
            os.chmod(path, 0o777)
            return {"kind": "dir", "hostPath": str(path)}
        if "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]["claimName"]
            if claim not in self.claims:
                raise CreateContainerConfigError(
                    f'persistentvolumeclaim "{claim}" not found (the pod would stay Pending)')
            path = self.claims[claim]
            path.mkdir(parents=True, exist_ok=True)
            if fs_group is not None:
                _set_volume_ownership(path, fs_group)
            return {"kind": "dir", "hostPath": str(path),
                    "readOnly": bool(vol["persistentVolumeClaim"].get("readOnly"))}
        for kind, store in (("configMap", self.configmaps), ("secret", self.secrets)):
            if kind in vol:
                src = vol[kind]
                ref = src.get("name") or src.get("secretName")
                data = store.get(ref)
                if data is None:
                    raise CreateContainerConfigError(
                        f'{kind.lower()} "{ref}" not found (the pod would stay '
                        "ContainerCreating with FailedMount)")
                path = pod_dir / "volumes" / f"kubernetes.io~{kind.lower()}" / name
                path.mkdir(parents=True)
                mode = src.get("defaultMode", 0o644)
                for key, value in data.items():
                    (path / key).write_text(value)
                    os.chmod(path / key, mode)
                    if fs_group is not None:
                        os.chown(path / key, 0, fs_group)
                return {"kind": "dir", "hostPath": str(path), "readOnly": True}
        raise CreateContainerConfigError(f"unsupported volume {name}: {sorted(vol)}")

    # ---------------------------------------------------------------- run
    def start(self, pod: Pod, container_name: str | None = None) -> Running:
        """Create and start the container (makeMounts, makeEnvironmentVariables, runtime)."""
        spec = pod.spec
        containers = spec["containers"]
        c = next(x for x in containers if container_name in (None, x["name"]))
        psc = spec.get("securityContext") or {}
        csc = c.get("securityContext") or {}
        uid = csc.get("runAsUser", psc.get("runAsUser", 0))
        gid = csc.get("runAsGroup", psc.get("runAsGroup", 0))
        if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and uid == 0:
            raise CreateContainerConfigError(
                "container has runAsNonRoot and image will run as root")
        fs_group = psc.get("fsGroup")
        groups = sorted({g for g in [fs_group, *(psc.get("supplementalGroups") or [])]
                         if g is not None})
        pod_dir = self.root / "pods" / pod.metadata["uid"]
        pod_dir.mkdir(parents=True)
        vols = {v["name"]: self._volume_dir(pod_dir, pod, v, fs_group)
                for v in spec.get("volumes") or []}
        mounts = []
        for vm in c.get("volumeMounts") or []:
            vol = dict(vols[vm["name"]])
            vol["containerPath"] = vm["mountPath"]
            vol["readOnly"] = bool(vm.get("readOnly")) or vol.get("readOnly", False)
            mounts.append(vol)
        term_path = c.get("terminationMessagePath", "/dev/termination-log")
        term_file = None
        if term_path:  # makeMounts: created, chmod 0666, appended after the volumes
            cdir = pod_dir / "containers" / c["name"]
            cdir.mkdir(parents=True)
            term_file = cdir / f"{uuid.uuid4().int % 2**32:08x}"
            term_file.touch()
            os.chmod(term_file, 0o666)
            mounts.append({"kind": "file", "hostPath": str(term_file),
                           "containerPath": term_path})
        env = dict(self.image_env)
        cenv = self.environment(pod, c)
        env.update(cenv)
        command = [expand(x, cenv) for x in (c.get("command") or [])]
        args = [expand(x, cenv) for x in (c.get("args") or [])]
        plan = {"rootfs": str(pod_dir / "rootfs"), "mounts": mounts,
                "readOnlyRootFilesystem": bool(csc.get("readOnlyRootFilesystem")),
                "uid": uid, "gid": gid, "groups": groups,
                "noNewPrivs": csc.get("allowPrivilegeEscalation") is False,
                "workingDir": c.get("workingDir") or "/", "command": command + args,
                "env": env, "reachable": self.reachable,
                "image_dirs": self.image_dirs}
        plan_file = pod_dir / "plan.json"
        plan_file.write_text(json.dumps(plan))
        log = open(pod_dir / f"{c['name']}.log", "wb")  # noqa: SIM115 (closed in wait)
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", sys.executable, str(HELPER),
             str(plan_file)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        return Running(proc, log, term_file)

    def run(self, pod: Pod, timeout: float | None = None) -> Result:
        try:
            running = self.start(pod)
        except CreateContainerConfigError as exc:
            return Result(-1, "CreateContainerConfigError", str(exc), "")
        return running.wait(timeout)


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    log_file: Any
    termination_file: Path | None

    def terminate(self) -> None:
        """What the kubelet's killContainer does first: SIGTERM to the container's init."""
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> Result:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait()
        self.log_file.close()
        log = Path(self.log_file.name).read_text(errors="replace")
        code = 128 - code if code < 0 else code  # killed by a signal: 128 + signo
        message = ""
        if self.termination_file is not None:
            data = self.termination_file.read_bytes()[-MAX_TERMINATION_MESSAGE:]
            message = data.decode(errors="replace")
        return Result(code, "Completed" if code == 0 else "Error", message, log,
                      self.termination_file)


@functools.cache
def unsupported() -> str | None:
    """Why the double cannot run here (a reason for pytest.skip), or None."""
    if os.geteuid() != 0:
        return "the node double needs root (mount namespaces, bind mounts, setuid)"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "mount", "-t",
                            "tmpfs", "tmpfs", "/mnt"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        return f"no private mount namespace here: {probe.stderr.strip()[:200]}"
    return None


def _set_volume_ownership(path: Path, gid: int) -> None:
    """SetVolumeOwnership: chgrp to fsGroup, group rw (x for dirs), setgid on dirs."""
    for dirpath, _dirs, filenames in os.walk(path):
        os.chown(dirpath, -1, gid)
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o2070)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chown(p, -1, gid)
                os.chmod(p, os.stat(p).st_mode | 0o060)
