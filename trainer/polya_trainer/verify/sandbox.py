"""Run untrusted, model-written Python (HumanEval-style completions) in a contained process.

Every program runs in its own short-lived process:

* **Process.** ``sys.executable -I`` (isolated mode: no ``PYTHON*`` variables, no user site, no
  script directory on ``sys.path``) on a driver script in a fresh temporary directory, which is
  the process's cwd, ``HOME`` and ``TMPDIR`` and is deleted afterwards. The environment is
  cleared except ``PATH`` and ``LANG``. stdin is closed; stdout/stderr go to files capped by
  the file-size limit.
* **Kernel limits** (``resource.setrlimit`` in ``preexec_fn``): CPU seconds, address space
  (memory), file size, open files, process count, no core dumps.
* **Namespaces.** When ``unshare -rn`` works here (util-linux; user + network namespace), the
  program runs in a namespace with no network interfaces at all. Probed once; without it the
  in-process blocks below still refuse every socket.
* **Privileges.** When the evaluator runs as root (where ``RLIMIT_NPROC`` is not enforced), the
  child switches to ``nobody`` if a probe shows the interpreter still starts that way.
* **Wall clock.** The process leads a new session; on timeout the whole process group is
  killed (``os.killpg``).
* **In-process guard** (the driver's prelude, before any user code): an audit hook
  (``sys.addaudithook``, which cannot be removed) refuses sockets, process creation
  (``os.fork``/``os.system``/``os.exec*``/``os.posix_spawn``/``subprocess.Popen``), signals to
  other processes, ``ctypes``, hard/symbolic links, importing modules that bypass auditing
  (ctypes, cffi, sqlite3, dbm, ``_posixsubprocess``) and opening any path outside the temporary
  directory, except reads below the Python installation (``sys.prefix``/``sys.base_prefix``).
  The ``os``/``posix``/``subprocess``/``socket`` functions are also replaced by functions that
  raise, so violations fail with a clear ``PermissionError``.
* **Scoring.** A program passes only when it exits 0 within every limit. ``SystemExit`` and
  ``os._exit`` inside user code count as failures, so a completion cannot "pass" by exiting
  before the tests run.

Threat model: this contains mistakes and casual misbehaviour of generated code (runaway loops,
fork bombs, memory hogs, stray writes and network calls). The kernel limits, the namespace and
the wall clock hold against anything; the audit hook is a strong filter but shares the
process with the untrusted code, so for hostile code at scale run evaluation pods without
secrets or service-account tokens (as the operator does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

NOBODY = 65534
MAX_CAPTURE = 8192  # bytes of stdout/stderr kept per run

Status = Literal["passed", "failed", "timeout", "error"]


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run."""

    timeout_s: float = 10.0
    """Wall-clock seconds before the process group is killed."""
    cpu_s: int = 5
    """CPU seconds (RLIMIT_CPU)."""
    memory_bytes: int = 1 << 30
    """Address space (RLIMIT_AS)."""
    file_bytes: int = 16 << 20
    """Largest file the program may write, stdout/stderr included (RLIMIT_FSIZE)."""
    processes: int = 64
    """RLIMIT_NPROC (counts every process of the user; root is exempt, hence the guard)."""
    open_files: int = 256
    """RLIMIT_NOFILE."""
    network_namespace: bool = True
    """Use `unshare -rn` when it works on this machine."""
    drop_root: bool = True
    """Run as nobody when the evaluator is root (if the interpreter is reachable that way)."""


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one sandboxed program."""

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# The driver's prelude. It runs in the child before user code: read the program, then lock
# the process down and execute it. Kept self-contained (no imports from this package).
PRELUDE = r'''
def _polya_sandbox_main():
    import builtins, os, posix, stat, sys
    import subprocess as _sp
    import _posixsubprocess
    root = os.getcwd()
    with open("program.py", encoding="utf-8") as f:
        source = f.read()
    code = compile(source, "program.py", "exec")
    enc = sys.getfilesystemencoding()
    _fspath, _lstat, _readlink, _getcwd = posix.fspath, posix.lstat, posix.readlink, posix.getcwd
    _islnk, _write, _exit = stat.S_ISLNK, posix.write, posix._exit
    _stdout, _stderr = sys.__stdout__, sys.__stderr__
    prefixes = []
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        p = os.path.realpath(p)
        if p not in prefixes and p != "/":
            prefixes.append(p)
    read_ok = (root, *prefixes)
    dev_ok = ("/dev/null", "/dev/urandom")
    wflags = posix.O_WRONLY | posix.O_RDWR | posix.O_APPEND | posix.O_CREAT | posix.O_TRUNC
    deny_prefix = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn",
                   "os.spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.link",
                   "os.symlink", "signal.pthread_kill", "ctypes.", "sqlite3.", "dbm.",
                   "resource.setrlimit", "resource.prlimit", "sys.addaudithook",
                   "gc.get_objects", "gc.get_referrers", "gc.get_referents", "_winapi.",
                   "winreg.", "msvcrt.", "cpython.remote_debugger", "os.startfile",
                   "os.add_dll_directory", "pty.")
    deny_import = {"ctypes", "_ctypes", "cffi", "_cffi_backend", "sqlite3", "_sqlite3",
                   "dbm", "_dbm", "_gdbm", "_posixsubprocess", "_xxsubinterpreters",
                   "_testcapi", "_testinternalcapi", "_testbuffer", "_testmultiphase",
                   "readline", "pty"}
    path_events = {"os.rename": 2, "os.remove": 1, "os.rmdir": 1, "os.mkdir": 1,
                   "os.chmod": 1, "os.chown": 1, "os.truncate": 1, "os.utime": 1,
                   "os.chdir": 1, "os.chflags": 1, "os.lchflags": 1, "os.setxattr": 1,
                   "os.removexattr": 1, "os.mkfifo": 1, "os.mknod": 1, "shutil.chown": 1}
    list_events = {"os.listdir", "os.scandir", "os.listxattr", "os.getxattr", "glob.glob",
                   "glob.glob/2"}

    def resolve(p):
        """Absolute path with symlinks resolved, using only references captured here."""
        p = _fspath(p)
        if isinstance(p, bytes):
            p = p.decode(enc, "surrogateescape")
        if not p.startswith("/"):
            p = _getcwd() + "/" + p
        todo = [x for x in p.split("/") if x and x != "."]
        out, hops = [], 0
        while todo:
            name = todo.pop(0)
            if name == "..":
                if out:
                    out.pop()
                continue
            cand = "/" + "/".join([*out, name])
            try:
                st = _lstat(cand)
            except OSError:
                out.append(name)
                continue
            if _islnk(st.st_mode):
                hops += 1
                if hops > 40:
                    raise PermissionError("sandbox: too many symbolic links")
                target = _readlink(cand)
                if target.startswith("/"):
                    out = []
                todo = [x for x in target.split("/") if x and x != "."] + todo
            else:
                out.append(name)
        return "/" + "/".join(out)

    def under(p, roots):
        try:
            r = resolve(p)
        except PermissionError:
            raise
        except Exception:
            return False
        return any(r == x or r.startswith(x + "/") for x in roots)

    def deny(what):
        raise PermissionError(f"sandbox: {what} is not allowed")

    def hook(event, args):
        if event.startswith(deny_prefix):
            deny(event)
        if event == "open":
            path = args[0]
            if isinstance(path, int) or path is None:
                return
            mode, flags = args[1], args[2] or 0
            write = bool(flags & wflags) or (
                isinstance(mode, str) and any(c in mode for c in "wax+"))
            if write:
                if not under(path, (root,)):
                    deny(f"writing {path!r}")
            elif not under(path, read_ok) and not under(path, dev_ok):
                deny(f"reading {path!r}")
        elif event == "import":
            name = args[0] or ""
            if name in deny_import or name.split(".")[0] in deny_import:
                deny(f"import of {name}")
        elif event in path_events:
            for p in args[:path_events[event]]:
                if p is not None and not isinstance(p, int) and not under(p, (root,)):
                    deny(f"{event} on {p!r}")
        elif event in list_events:
            p = args[0] if args else None
            if p is not None and not isinstance(p, int) and not under(p, read_ok):
                deny(f"{event} on {p!r}")

    def blocked(name):
        def f(*a, **k):
            raise PermissionError(f"sandbox: {name} is not allowed")
        return f

    for mod in (os, posix):
        for name in ("fork", "forkpty", "system", "popen", "execv", "execve", "execl",
                     "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnv", "spawnve",
                     "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnvp", "spawnvpe",
                     "posix_spawn", "posix_spawnp", "kill", "killpg", "_exit", "link",
                     "symlink"):
            if hasattr(mod, name):
                setattr(mod, name, blocked(f"os.{name}"))
    for name in ("Popen", "run", "call", "check_call", "check_output", "getoutput",
                 "getstatusoutput"):
        setattr(_sp, name, blocked(f"subprocess.{name}"))
    _posixsubprocess.fork_exec = blocked("fork_exec")
    for name in deny_import:
        sys.modules[name] = None
    if "socket" in sys.modules:
        del sys.modules["socket"]
    sys.addaudithook(hook)
    del builtins, os, posix, stat, _sp, _posixsubprocess, f, name, mod, p

    glb = {"__name__": "__main__", "__builtins__": __builtins__, "__file__": "program.py"}
    status = 0
    try:
        exec(code, glb)
    except BaseException as exc:  # SystemExit included: exiting early is not passing
        status = 1
        try:
            _stderr.write(f"{type(exc).__name__}: {exc}\n")
        except BaseException:
            pass
    for stream in (_stdout, _stderr):
        try:
            stream.flush()
        except BaseException:
            status = status or 1
    _exit(status)


_polya_sandbox_main()
'''


def _limits_fn(limits: Limits, drop_root: bool) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if drop_root:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))

    return apply


@functools.lru_cache(maxsize=4)
def _probe(drop_root: bool, unshare: bool) -> bool:
    """Whether the interpreter starts with these options here (decided once per process)."""
    if unshare and shutil.which("unshare") is None:
        return False
    tmp = tempfile.mkdtemp(prefix="polya-probe-")
    try:
        if drop_root:
            os.chown(tmp, NOBODY, NOBODY)
        cmd = (["unshare", "-rn"] if unshare else []) + [sys.executable, "-I", "-c", "pass"]
        r = subprocess.run(cmd, cwd=tmp, env=_env(tmp), capture_output=True, timeout=30,
                           preexec_fn=_limits_fn(Limits(), drop_root))
        return r.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def isolation(limits: Limits = Limits()) -> dict[str, bool]:
    """Which OS-level protections are in use here (for logs and tests)."""
    drop = limits.drop_root and os.geteuid() == 0 and _probe(True, False)
    net = limits.network_namespace and _probe(drop, True)
    return {"network_namespace": net, "dropped_root": drop, "audit_hook": True}


def _env(tmp: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": tmp, "TMPDIR": tmp}


def _read_capped(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_CAPTURE).decode("utf-8", "replace")
    except OSError:
        return ""


def run_program(source: str, limits: Limits = Limits()) -> ExecResult:
    """Run `source` as a Python program in the sandbox; passed only on exit code 0."""
    iso = isolation(limits)
    t0 = time.monotonic()
    work = tempfile.mkdtemp(prefix="polya-sbx-")
    logs = tempfile.mkdtemp(prefix="polya-sbx-logs-")  # outside the program's reach
    try:
        Path(work, "program.py").write_text(source, encoding="utf-8")
        Path(work, "driver.py").write_text(PRELUDE, encoding="utf-8")
        if iso["dropped_root"]:
            for p in (work, Path(work, "program.py"), Path(work, "driver.py")):
                os.chown(p, NOBODY, NOBODY)
        cmd = [sys.executable, "-I", "driver.py"]
        if iso["network_namespace"]:
            cmd = ["unshare", "-rn", *cmd]
        out_path, err_path = Path(logs, "stdout"), Path(logs, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(
                    cmd, cwd=work, env=_env(work), stdin=subprocess.DEVNULL, stdout=out,
                    stderr=err, start_new_session=True, close_fds=True,
                    preexec_fn=_limits_fn(limits, iso["dropped_root"]))
            except OSError as exc:
                return ExecResult("error", None, "", f"cannot start: {exc}",
                                  time.monotonic() - t0)
            timed_out = False
            try:
                rc = proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
            # Anything the program left behind in its group goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = _read_capped(out_path), _read_capped(err_path)
        if timed_out:
            status: Status = "timeout"
        elif rc == -signal.SIGXCPU:
            status, stderr = "timeout", stderr + "\n[sandbox] CPU time limit exceeded"
        else:
            status = "passed" if rc == 0 else "failed"
        return ExecResult(status, rc, stdout, stderr, time.monotonic() - t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


def run_many(sources: Sequence[str], limits: Limits = Limits(),
             workers: int | None = None) -> list[ExecResult]:
    """Run programs concurrently (each in its own sandboxed process), results in order."""
    if not sources:
        return []
    workers = workers or min(len(sources), max(1, (os.cpu_count() or 2)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(functools.partial(run_program, limits=limits), sources))


# --------------------------------------------------------------------------- HumanEval


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def extract_code(completion: str, entry_point: str | None = None) -> str:
    """The code in a completion: the fenced block defining `entry_point`, else the first
    Python block, else the text itself (a plain continuation of the prompt)."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(completion)]
    if not blocks:
        return completion
    if entry_point:
        for _, body in blocks:
            if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", body, re.M):
                return body
    for lang, body in blocks:
        if lang in ("", "python", "py", "python3"):
            return body
    return blocks[0][1]


def humaneval_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """prompt + completion + tests + ``check(entry_point)``, as HumanEval's harness does.

    A completion that (re)defines the whole function replaces the prompt's stub; the prompt is
    still included first so its imports and helper functions exist. A bare body continues the
    prompt.
    """
    code = extract_code(completion, entry_point)
    defines = re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.M) is not None
    body = f"{prompt}\n{code}" if defines else f"{prompt}{code}"
    return f"{body}\n\n{test}\n\ncheck({entry_point})\n"


def check_humaneval(prompt: str, completions: Sequence[str], test: str, entry_point: str,
                    limits: Limits = Limits(), workers: int | None = None) -> list[bool]:
    """Whether each completion passes the task's tests in the sandbox."""
    programs = [humaneval_program(prompt, c, test, entry_point) for c in completions]
    return [r.passed for r in run_many(programs, limits, workers)]


def limits_with(**changes: float | int | bool) -> Limits:
    """Default limits with some fields changed."""
    return dataclasses.replace(Limits(), **changes)
