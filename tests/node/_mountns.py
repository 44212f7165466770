"""The in-namespace half of the node double (see kubelet.py): run as root under
``unshare --mount --propagation private``, it builds the container's root filesystem, mounts
the volumes and the termination log, makes the root read-only, drops to the container's
uid/gid and execs the command. Reads one JSON plan (argv[1]) written by kubelet.py.

What it follows (the OCI runtime, runc, as driven by containerd's CRI plugin):

* mounts are applied parents first (containerd sorts the CRI mounts by path depth), each a
  bind mount of the host path the kubelet chose; a missing mount point is created in the
  filesystem underneath it (runc ``libcontainer/rootfs_linux.go: createIfNotExists``), so a
  file mount point inside an emptyDir is created inside that emptyDir;
* ``/dev`` is a fresh tmpfs with the standard device nodes bound in (runc's default
  devices), ``/proc`` and ``/sys`` come from the host (no pid namespace here);
* ``readOnlyRootFilesystem`` remounts the root read-only after all mounts
  (runc ``rootfs_linux.go: setReadonly``, done at the end of ``prepareRootfs``);
* then ``chroot``, supplementary groups (fsGroup, supplementalGroups), gid, uid,
  ``no_new_privs`` when ``allowPrivilegeEscalation`` is false, and ``execve`` of the command
  resolved on the container's ``PATH``.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

# The host's /, seen as the image: these top-level names are never taken from the host.
SPECIAL = {"proc", "sys", "dev", "tmp", "old_root", "lost+found"}
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
PR_SET_NO_NEW_PRIVS = 38


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def bind(src: str, dst: str, recursive: bool = False, readonly: bool = False) -> None:
    sh("mount", "--rbind" if recursive else "--bind", src, dst)
    if readonly:
        sh("mount", "-o", "remount,bind,ro", dst)


def make_point(path: Path, is_dir: bool) -> None:
    """createIfNotExists: a directory or an empty file as the mount point."""
    if path.exists() or path.is_symlink():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        path.mkdir()
    else:
        path.touch()


def mirror(host: Path, new: Path, shadow: set[str], binds: list[str]) -> None:
    """Fill the tmpfs directory ``new`` with the entries of host directory ``host``: shadowed
    directories (ancestors of a mount point) are recreated and filled in turn, everything else
    is bound from the host (always read-only: the double never writes the host's files)."""
    new.mkdir(parents=True, exist_ok=True)
    os.chmod(new, 0o755)
    for entry in os.scandir(host):
        path = f"{host.as_posix().rstrip('/')}/{entry.name}"
        target = new / entry.name
        if host == Path("/") and entry.name in SPECIAL:
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        elif path in shadow and entry.is_dir():
            mirror(Path(path), target, shadow, binds)
        elif entry.is_dir():
            target.mkdir()
            bind(path, str(target), recursive=True, readonly=True)
            binds.append(str(target))
        elif entry.is_file():
            target.touch()
            bind(path, str(target), readonly=True)
            binds.append(str(target))


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    root = Path(plan["rootfs"])
    root.mkdir(parents=True, exist_ok=True)
    sh("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(root))
    mounts = sorted(plan["mounts"], key=lambda m: m["containerPath"].rstrip("/").count("/"))
    shadow = {"/"}
    for p in [m["containerPath"] for m in mounts] + plan.get("reachable", []):
        parts = Path(p).parts
        shadow.update(str(Path(*parts[:i])) for i in range(2, len(parts)))
    binds: list[str] = []
    mirror(Path("/"), root, shadow, binds)
    for name in ("proc", "sys"):
        (root / name).mkdir()
        bind(f"/{name}", str(root / name), recursive=True, readonly=name == "sys")
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    dev = root / "dev"
    dev.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "mode=0755,nosuid", "tmpfs", str(dev))
    for d in DEVICES:
        (dev / d).touch()
        bind(f"/dev/{d}", str(dev / d))
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", dev / name)
    os.symlink("/proc/self/fd", dev / "fd")
    for m in mounts:
        target = root / m["containerPath"].lstrip("/")
        make_point(target, m["kind"] != "file")
        if m["kind"] == "tmpfs":
            opts = "mode=0777" + (f",size={m['size']}" if m.get("size") else "")
            sh("mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target))
        else:
            bind(m["hostPath"], str(target), readonly=m.get("readOnly", False))
    # Not runc: our "image" is this machine, and a checkout (and venv) under /tmp would be
    # hidden by the container's empty /tmp or a /tmp volume, so it is bound back in, read-only,
    # after the volumes (its mount point is an empty directory made inside the /tmp volume).
    for d in plan.get("image_dirs", []):
        if Path(d).is_relative_to("/tmp") and Path(d) != Path("/tmp"):
            target = root / d.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            bind(d, str(target), recursive=True, readonly=True)
    if plan["readOnlyRootFilesystem"]:  # /dev and the volumes stay writable, as in runc
        sh("mount", "-o", "remount,ro", str(root))
    os.chroot(root)
    os.chdir(plan.get("workingDir") or "/")
    os.setgroups(plan["groups"])
    os.setgid(plan["gid"])
    os.setuid(plan["uid"])
    if plan.get("noNewPrivs"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    cmd, env = plan["command"], plan["env"]
    try:
        os.execvpe(cmd[0], cmd, env)
    except OSError as exc:  # the runtime's StartError: exit 128, like runc's "exec failed"
        print(f"exec {cmd[0]!r}: {exc}", file=sys.stderr, flush=True)
        os._exit(128)


if __name__ == "__main__":
    main()
