"""Hostile completions for checking the code sandbox (tests, and a self-check on a new node).

Each case is a Python program that tries one escape: the network, process creation, memory,
CPU, files outside its directory, secrets, limits, or passing without running the tests. A
contained case fails (non-zero exit or killed). Side effects are checked by the caller with
the paths and port it passed in (``Targets``): the listener must receive nothing, the marker
files must not exist, the sacrificial process must stay alive and no secret may be printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Targets:
    """Things outside the sandbox that hostile programs aim at (all made by the caller)."""

    port: int
    """A TCP listener on 127.0.0.1 that must receive no connection."""
    outside_file: Path
    """A path outside the sandbox that must not be created."""
    touch_file: Path
    """A path a child process would create (`touch`); must not exist afterwards."""
    secret_file: Path
    """A file holding `secret` inside a directory standing in for the workdir."""
    secret: str
    """Text that must not appear in any output."""
    victim_pid: int
    """A process of the caller's that must survive."""
    env_secret: str = "POLYA_TEST_SECRET"
    """An environment variable set in the caller, holding `secret`."""


@dataclass(frozen=True)
class Hostile:
    name: str
    source: str
    kind: str  # network | process | memory | cpu | file | secret | cheat


def cases(t: Targets) -> list[Hostile]:
    port, out, touch = t.port, str(t.outside_file), str(t.touch_file)
    secret, workdir = str(t.secret_file), str(t.secret_file.parent)
    return [
        # ---- network
        Hostile("socket_connect", f"import socket\ns = socket.create_connection(('127.0.0.1', "
                f"{port}), timeout=2)\ns.sendall(b'LEAK')\n", "network"),
        Hostile("raw_socket", f"import socket\ns = socket.socket()\ns.settimeout(2)\n"
                f"s.connect(('127.0.0.1', {port}))\ns.send(b'LEAK')\n", "network"),
        Hostile("private_socket_module", f"import _socket\ns = _socket.socket()\n"
                f"s.connect(('127.0.0.1', {port}))\ns.send(b'LEAK')\n", "network"),
        Hostile("urllib", f"import urllib.request\nurllib.request.urlopen("
                f"'http://127.0.0.1:{port}/leak', timeout=2).read()\n", "network"),
        # ---- processes
        Hostile("fork_bomb", "import os\nwhile True:\n    os.fork()\n", "process"),
        Hostile("posix_fork_bomb", "import posix\nwhile True:\n    posix.fork()\n", "process"),
        Hostile("multiprocessing_bomb", "import multiprocessing as mp\nwhile True:\n"
                "    mp.Process(target=print).start()\n", "process"),
        Hostile("thread_bomb", "import threading, time\nwhile True:\n"
                "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n",
                "process"),
        Hostile("subprocess_touch", f"import subprocess\nsubprocess.run(['touch', {touch!r}])\n",
                "process"),
        Hostile("os_system_touch", f"import os\nos.system('touch {touch}')\n", "process"),
        Hostile("os_popen_touch", f"import os\nos.popen('touch {touch}').read()\n", "process"),
        Hostile("execv_touch", f"import os\nos.execv('/usr/bin/touch', ['touch', {touch!r}])\n",
                "process"),
        Hostile("posix_spawn_touch", f"import os\nos.posix_spawn('/usr/bin/touch', ['touch', "
                f"{touch!r}], {{}})\n", "process"),
        Hostile("ctypes_system", f"import ctypes\nctypes.CDLL(None).system(b'touch {touch}')\n",
                "process"),
        Hostile("ctypes_reimport", "import sys\nsys.modules.pop('ctypes', None)\n"
                "import importlib\nimportlib.import_module('_ctypes')\n", "process"),
        Hostile("kill_other_process", f"import os, signal\nos.kill({t.victim_pid}, "
                "signal.SIGKILL)\n", "process"),
        # ---- memory and CPU
        Hostile("bytearray_hog", "x = bytearray(10**10)\n", "memory"),
        Hostile("list_hog", "x = []\nwhile True:\n    x.append([0] * 10**6)\n", "memory"),
        Hostile("raise_memory_limit", "import resource\nresource.setrlimit(resource.RLIMIT_AS,"
                " (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\nx = bytearray(10**10)\n",
                "memory"),
        Hostile("infinite_loop", "while True:\n    pass\n", "cpu"),
        Hostile("sleep_forever", "import time\ntime.sleep(10**6)\n", "cpu"),
        Hostile("output_flood", "while True:\n    print('x' * 65536)\n", "file"),
        Hostile("big_local_file", "with open('big.bin', 'wb') as f:\n"
                "    f.write(b'x' * (256 << 20))\n", "file"),
        # ---- files outside the sandbox
        Hostile("write_outside", f"open({out!r}, 'w').write('pwned')\n", "file"),
        Hostile("os_open_outside", f"import os\nfd = os.open({out!r}, os.O_WRONLY | os.O_CREAT)"
                "\nos.write(fd, b'pwned')\n", "file"),
        Hostile("pathlib_outside", f"from pathlib import Path\nPath({out!r}).write_text('pwned')"
                "\n", "file"),
        Hostile("rename_into_place", f"open('x', 'w').write('pwned')\nimport os\n"
                f"os.rename('x', {out!r})\n", "file"),
        Hostile("chdir_then_write", f"import os\nos.chdir({str(t.outside_file.parent)!r})\n"
                f"open({t.outside_file.name!r}, 'w').write('pwned')\n", "file"),
        # ---- secrets
        Hostile("read_secret", f"print(open({secret!r}).read())\n", "secret"),
        Hostile("read_secret_relative", f"import os\nprint(open(os.path.relpath({secret!r}))"
                ".read())\n", "secret"),
        Hostile("symlink_secret", f"import os\nos.symlink({secret!r}, 'link')\n"
                "print(open('link').read())\n", "secret"),
        Hostile("hardlink_secret", f"import os\nos.link({secret!r}, 'link')\n"
                "print(open('link').read())\n", "secret"),
        Hostile("list_workdir", f"import os\nprint(os.listdir({workdir!r}))\n"
                "raise SystemExit(0)\n", "secret"),
        Hostile("proc_environ", "print(open('/proc/self/environ', 'rb').read())\n", "secret"),
        Hostile("parent_environ", "import os\nprint(open(f'/proc/{os.getppid()}/environ', "
                "'rb').read())\n", "secret"),
        Hostile("env_secret", f"import os\nprint(os.environ[{t.env_secret!r}])\n", "secret"),
        # ---- passing without running the tests
        Hostile("sys_exit_zero", "import sys\nsys.exit(0)\nassert False\n", "cheat"),
        Hostile("os_exit_zero", "import os\nos._exit(0)\nassert False\n", "cheat"),
        Hostile("posix_exit_zero", "import posix\nposix._exit(0)\nassert False\n", "cheat"),
    ]
