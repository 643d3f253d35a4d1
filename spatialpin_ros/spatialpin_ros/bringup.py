"""Run a node graph without ``ros2 launch``: one process per node, with the same parameter
files and remappings as the launch files (both read ``spatialpin_ros.graph``).

``spatialpin bringup sim -p sim.seed:=3`` starts the simulation node with seed 3.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Optional, Sequence

from spatialpin_ros.graph import ARGUMENTS, NodeSpec, graph
from spatialpin_ros.paths import config_file

log = logging.getLogger(__name__)


def node_command(spec: NodeSpec, overrides: Sequence[str] = ()) -> list[str]:
    """The command line of one node: ``python -m module --ros-args`` with its name, parameter
    files, remappings and ``param:=value`` overrides."""
    cmd = [sys.executable, "-u", "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}"]
    for f in spec.params:
        path = config_file(f)
        if not path.is_file():
            raise FileNotFoundError(f"parameter file {path} of node {spec.name} is missing")
        cmd += ["--params-file", str(path)]
    cmd += spec.remap_args()
    for o in overrides:
        cmd += ["-p", o]
    return cmd


def split_overrides(graph_name: str, overrides: Sequence[str]) -> dict[str, list[str]]:
    """Group ``node.param:=value`` (or a launch argument ``arg:=value``) by node."""
    nodes = {s.name for s in graph(graph_name)}
    args: dict[str, list[tuple[str, str]]] = {}
    for a in ARGUMENTS:  # an argument may set a parameter of several nodes
        args.setdefault(a[0], []).append((a[3], a[4]))
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for o in overrides:
        if ":=" not in o:
            raise ValueError(f"override {o!r} must look like node.param:=value or arg:=value")
        key, value = o.split(":=", 1)
        if key in args:
            targets = args[key]
        elif "." in key and key.split(".", 1)[0] in nodes:
            targets = [tuple(key.split(".", 1))]
        else:
            raise ValueError(f"override {o!r}: no node or launch argument {key!r} in graph "
                             f"{graph_name!r} (nodes: {sorted(nodes)}, arguments: {sorted(args)})")
        for node, param in targets:
            if node in out:
                out[node].append(f"{param}:={value}")
    return out


class Bringup:
    """Start the nodes of a graph as child processes; ``stop()`` ends them all."""

    def __init__(self, graph_name: str, overrides: Sequence[str] = (), echo: bool = True,
                 log_dir: Optional[str] = None):
        self.graph_name = graph_name
        self.specs = graph(graph_name)
        self.overrides = split_overrides(graph_name, overrides)
        self.echo = echo
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> "Bringup":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for spec in self.specs:
            cmd = node_command(spec, self.overrides.get(spec.name, ()))
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env=env, text=True, start_new_session=True)
            self.procs[spec.name] = proc
            t = threading.Thread(target=self._pump, args=(spec.name, proc), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _pump(self, name: str, proc: subprocess.Popen) -> None:
        logf = open(os.path.join(self.log_dir, f"{name}.log"), "w") if self.log_dir else None
        try:
            for line in proc.stdout:
                if logf:
                    logf.write(line)
                    logf.flush()
                if self.echo and "nanobind: leaked" not in line:
                    sys.stdout.write(f"[{name}] {line}")
                    sys.stdout.flush()
        finally:
            if logf:
                logf.close()

    def failed(self) -> dict[str, int]:
        """Nodes that have exited, with their exit codes."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def stop(self, timeout: float = 10.0) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for t in self._threads:
            t.join(timeout=2.0)

    def __enter__(self) -> "Bringup":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run(graph_name: str, overrides: Sequence[str] = ()) -> int:
    """Run a graph in the foreground until Ctrl-C or a node exits; returns an exit code."""
    b = Bringup(graph_name, overrides).start()
    print(f"bringup '{graph_name}': {', '.join(b.procs)} (Ctrl-C to stop)", flush=True)
    code = 0
    try:
        while True:
            dead = b.failed()
            if dead:
                print(f"bringup: node(s) exited: {dead}; stopping the graph", flush=True)
                code = max(dead.values()) or 0
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()
    return code
