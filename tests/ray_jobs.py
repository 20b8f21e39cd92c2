"""Jobs for ``RayPool`` tests. Ray worker processes import this module to run them (the tests
folder is on their PYTHONPATH), so it stays light: no pytest, no torch."""

from __future__ import annotations

import os
import time


def make_state(tag: str) -> dict:
    return {"tag": tag, "pid": os.getpid()}


def run_job(state: dict, item: str) -> tuple[str, int, str]:
    """``crash`` kills the worker process, ``hang`` never ends, ``raise`` raises; anything else
    answers with the worker's pid (where its state was built) and node."""
    if item == "crash":
        os._exit(9)
    if item == "hang":
        time.sleep(600)
    if item == "raise":
        raise ValueError("bad item")
    import ray

    assert state["pid"] == os.getpid()  # the state was built in this very process
    return f"{state['tag']}:{item}", state["pid"], ray.get_runtime_context().get_node_id()


def failing_init(tag: str) -> dict:
    raise FileNotFoundError(f"weights {tag} not found")
