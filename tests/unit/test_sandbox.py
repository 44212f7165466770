"""The code sandbox: correct programs pass, wrong ones fail, and hostile ones are contained.

Every case really runs in a subprocess with the real limits; the hostile cases run in
parallel once per module (`contained` fixture) and each test checks one case's outcome and
side effects: the listener got nothing, no marker file exists, the victim process lives, and
no secret was printed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from polya_trainer.verify import sandbox
from polya_trainer.verify.sandbox import ExecResult, Limits
from polya_trainer.verify.sandbox_hostile import Targets, cases

LIMITS = Limits(timeout_s=8.0, cpu_s=3, memory_bytes=512 << 20, file_bytes=4 << 20)
SECRET = "s3cr3t-token-7d1f"

PROMPT = '''from typing import List


def below_zero(operations: List[int]) -> bool:
    """ Return True if the running balance ever drops below zero.
    >>> below_zero([1, 2, -4, 5])
    True
    """
'''
TEST = '''

METADATA = {}


def check(candidate):
    assert candidate([]) is False
    assert candidate([1, 2, -3, 1, 2, -3]) is False
    assert candidate([1, 2, -4, 5, 6]) is True
    assert candidate([1, -1, 2, -2, 5, -5, 4, -5]) is True
'''
GOOD_BODY = "    balance = 0\n    for op in operations:\n        balance += op\n" \
            "        if balance < 0:\n            return True\n    return False\n"
GOOD_CHAT = ("Here is the function:\n```python\nfrom typing import List\n\n"
             "def below_zero(operations: List[int]) -> bool:\n" + GOOD_BODY + "```\nDone.")
WRONG_BODY = "    return sum(operations) < 0\n"


class Listener:
    """A TCP server on 127.0.0.1 that records every connection and byte it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.settimeout(1)
            with contextlib.suppress(OSError):
                self.received.append(conn.recv(4096))
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture(scope="module")
def contained(tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Targets, Listener, dict[str, ExecResult]]]:
    """Run every hostile case once, in parallel, against targets this fixture owns."""
    root = tmp_path_factory.mktemp("hostile")
    workdir = root / "workdir"
    workdir.mkdir()
    secret_file = workdir / "secret.txt"
    secret_file.write_text(SECRET)
    victim = subprocess.Popen(["sleep", "300"])
    listener = Listener()
    os.environ["POLYA_TEST_SECRET"] = SECRET
    targets = Targets(port=listener.port, outside_file=root / "pwned",
                      touch_file=root / "touched", secret_file=secret_file, secret=SECRET,
                      victim_pid=victim.pid)
    try:
        hostile = cases(targets)
        results = sandbox.run_many([h.source for h in hostile], LIMITS, workers=4)
        yield targets, listener, {h.name: r for h, r in zip(hostile, results, strict=True)}
        assert victim.poll() is None, "the victim process was killed from inside the sandbox"
    finally:
        os.environ.pop("POLYA_TEST_SECRET", None)
        listener.close()
        victim.kill()
        victim.wait()


HOSTILE_NAMES = [h.name for h in cases(Targets(1, Path("/x"), Path("/y"), Path("/z/s"), "", 1))]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_case_is_contained(
        name: str, contained: tuple[Targets, Listener, dict[str, ExecResult]]) -> None:
    targets, listener, results = contained
    result = results[name]
    assert not result.passed, f"{name} passed: {result}"
    assert result.status in ("failed", "timeout")
    assert listener.connections == 0 and listener.received == []
    assert not targets.outside_file.exists()
    assert not targets.touch_file.exists()
    assert SECRET not in result.stdout and SECRET not in result.stderr
    assert targets.secret_file.name not in result.stdout
    assert os.path.exists(f"/proc/{targets.victim_pid}")


def test_violations_are_reported_as_refusals(
        contained: tuple[Targets, Listener, dict[str, ExecResult]]) -> None:
    """The guard refuses with a clear message (not just an accidental crash)."""
    _, _, results = contained
    for name in ("fork_bomb", "write_outside", "read_secret", "subprocess_touch",
                 "os_system_touch", "ctypes_system", "raw_socket", "symlink_secret"):
        assert "sandbox:" in results[name].stderr and "not allowed" in results[name].stderr, name
    assert "MemoryError" in results["bytearray_hog"].stderr
    assert results["sleep_forever"].status == "timeout"
    assert results["infinite_loop"].status == "timeout"  # CPU limit (SIGXCPU) or wall clock


def test_correct_and_wrong_humaneval_completions() -> None:
    completions = [GOOD_BODY, GOOD_CHAT, WRONG_BODY, "```python\nthis is not python\n```"]
    assert sandbox.check_humaneval(PROMPT, completions, TEST, "below_zero", LIMITS,
                                   workers=2) == [True, True, False, False]


def test_ordinary_programs_work_inside() -> None:
    """Stdlib imports, files in the sandbox's own directory and tempfile are allowed."""
    program = (
        "import collections, hashlib, heapq, itertools, json, math, re, tempfile, typing\n"
        "P = collections.namedtuple('P', 'a b')\n"
        "open('notes.txt', 'w').write('hello')\n"
        "assert open('notes.txt').read() == 'hello'\n"
        "d = tempfile.mkdtemp()\n"
        "print(P(1, 2), math.comb(5, 2), hashlib.sha256(b'x').hexdigest()[:8], d)\n"
    )
    result = sandbox.run_program(program, LIMITS)
    assert result.passed, result
    assert "P(a=1, b=2) 10 2d711642" in result.stdout


def test_exception_fails_and_output_is_captured() -> None:
    result = sandbox.run_program("print('before')\nraise ValueError('boom')\n", LIMITS)
    assert result.status == "failed" and result.returncode == 1
    assert "before" in result.stdout and "ValueError: boom" in result.stderr


def test_extract_code_prefers_block_with_entry_point() -> None:
    text = "```\nprint(1)\n```\n```python\ndef f(x):\n    return x\n```"
    assert sandbox.extract_code(text, "f").startswith("def f(x)")
    assert sandbox.extract_code("    return 1\n", "f") == "    return 1\n"
    program = sandbox.humaneval_program("def f(x):\n    '''doc'''\n", text, "def check(c):\n"
                                        "    assert c(2) == 2\n", "f")
    assert program.rstrip().endswith("check(f)")
    assert sandbox.run_program(program, LIMITS).passed


def test_isolation_report_matches_machine() -> None:
    iso = sandbox.isolation(LIMITS)
    assert iso["audit_hook"] is True
    # The network namespace is used exactly when unshare works here.
    works = subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0 \
        if sandbox.shutil.which("unshare") else False
    assert iso["network_namespace"] == works
