"""Live progress polling under a NetworkPolicy that blocks the operator (issue 27): 100
running pods whose ``/progress`` accepts connections and never answers. The resync stays
within its budget, the one pod that answers is still read, and /healthz stays 200."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from opkit import free_port
from polya_operator import executor as x
from polya_operator import handlers, metrics

PODS = 100
JOB = "r1-vanilla-evaluate-0"


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accept, read, never answer (until the client gives up)
    writer.close()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    body = json.dumps({"stage": "evaluate", "progress": 40.0}).encode()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    await writer.drain()
    writer.close()


def _pod(i: int, port: int) -> dict[str, Any]:
    return {"metadata": {"name": f"{JOB}-{i}", "annotations": {x.INDEX_KEY: str(i)}},
            "status": {"phase": "Running", "podIP": "127.0.0.1"}, "port": port}


def _operator(silent: int, answering: int) -> handlers.Operator:
    op = handlers.Operator(handlers.Config(metrics_port=0, watch_check=0, resync=30))
    key = ("default", "r1")
    run = {"metadata": {"name": "r1", "namespace": "default", "uid": "u1"},
           "spec": {"model": {"name": "org/m"}, "arms": ["vanilla"]},
           "status": {"stages": [{"name": "evaluate", "arm": "vanilla", "state": "Running",
                                  "jobName": JOB}]}}
    job = {"metadata": {"name": JOB, "labels": {}}, "spec": {"completions": PODS},
           "status": {}}
    pods = [_pod(0, answering)] + [_pod(i, silent) for i in range(1, PODS)]
    op.idx = {"runs": {key: [run]}, "jobs": {key: [job]}, "pods": {("default", JOB): pods}}
    op.indexed = True  # readiness is test_readiness.py's
    return op


async def test_unreachable_progress_endpoints_keep_the_resync_bounded_and_live() -> None:
    silent = await asyncio.start_server(_silent, "127.0.0.1", 0)
    answering = await asyncio.start_server(_answer, "127.0.0.1", 0)
    op = _operator(silent.sockets[0].getsockname()[1], answering.sockets[0].getsockname()[1])
    port = free_port()
    runner = await metrics.serve(port, op.health, host="127.0.0.1")
    try:
        op.health.tick()
        resync = asyncio.create_task(op.resync_once())
        async with aiohttp.ClientSession() as sess:
            await asyncio.sleep(0.5)  # polls in flight
            t = time.monotonic()
            async with sess.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
            assert time.monotonic() - t < 1.0  # the event loop answers meanwhile
        t = time.monotonic()
        await resync
        took = time.monotonic() - t + 0.5
        print(f"resync with {PODS - 1} silent pods: {took:.2f} s")
        assert took < op.config.progress_budget + 1.0
        assert op.health.alive()
        assert op.live[JOB]["stage"] == "evaluate"  # the answering index was read
        assert ("default", "r1") in op.dirty  # and the run queued for it
    finally:
        await runner.cleanup()
        silent.close()
        answering.close()


async def test_the_poll_budget_cuts_a_round_short() -> None:
    silent = await asyncio.start_server(_silent, "127.0.0.1", 0)
    pods = [_pod(i, silent.sockets[0].getsockname()[1]) for i in range(10)]
    try:
        t = time.monotonic()
        assert await x.poll_progress(pods, timeout=30.0, budget=0.5) == {}
        assert time.monotonic() - t < 1.5
    finally:
        silent.close()
