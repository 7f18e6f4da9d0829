"""A deployment's flow, imported once per warm worker process.

The process worker loads the flow in each run's own process, after `chdir` into the
deployment's folder. Threads share one working directory and one `sys.path`, so the
warm worker resolves the folder from the deployment's pull steps, puts it on
`sys.path` once and imports the entrypoint as a module. New code needs a worker
restart, as for any long-running process.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from typing import Any

from prefect import Flow

SET_WORKING_DIRECTORY = "prefect.deployments.steps.set_working_directory"


class UnsupportedDeployment(RuntimeError):
    """A deployment the warm worker cannot run in-process."""


def working_directory(pull_steps: list[dict[str, Any]] | None, path: str | None) -> str:
    """The folder a deployment's code lives in. Only `set_working_directory` is
    supported: a pull step that fetches code (git clone, S3 pull) would change what
    every other stream in this process runs."""
    directory = path or os.getcwd()
    for step in pull_steps or []:
        (name, spec), *rest = step.items()
        if rest or name != SET_WORKING_DIRECTORY:
            raise UnsupportedDeployment(
                f"pull step {name!r} fetches code; the warm worker runs code already on "
                "this host (start it in the project folder), use a process work pool for "
                "deployments that pull their code"
            )
        directory = str(spec.get("directory") or directory)
    return directory


def module_name(entrypoint: str) -> tuple[str, str]:
    """`flows/ingest.py:stream_ingest` -> (`flows.ingest`, `stream_ingest`)."""
    path, sep, attr = entrypoint.rpartition(":")
    if not sep or not path or not attr:
        raise UnsupportedDeployment(f"entrypoint {entrypoint!r} is not 'path.py:flow'")
    if path.endswith(".py"):
        path = path[: -len(".py")].replace("\\", "/").strip("/").replace("/", ".")
    return path, attr


class FlowCache:
    """Flows by (folder, entrypoint): imported by the first run that needs them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flows: dict[tuple[str, str], Flow[Any, Any]] = {}

    def load(self, directory: str, entrypoint: str) -> Flow[Any, Any]:
        key = (directory, entrypoint)
        with self._lock:
            if key not in self._flows:
                self._flows[key] = _import(directory, entrypoint)
            return self._flows[key]


def _import(directory: str, entrypoint: str) -> Flow[Any, Any]:
    module, attr = module_name(entrypoint)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    found = getattr(importlib.import_module(module), attr, None)
    if not isinstance(found, Flow):
        raise UnsupportedDeployment(f"{entrypoint} is not a Prefect flow")
    return found
