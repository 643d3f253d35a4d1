"""Run a node graph without ``ros2 launch``: one process per node, with the same parameter
files and remappings as the launch files (both read ``spatialpin_ros.graph``).

``spatialpin bringup sim -p sim.seed:=3`` starts the simulation node with seed 3.

Respawn, as launch's ``Node(respawn=True, respawn_delay=...)``: ``-p respawn:=true`` restarts any
node of the graph that exits, ``respawn_delay`` seconds later (``-p respawn_delay:=2.0``);
``-p perception.respawn:=true`` (and ``perception.respawn_delay:=S``) does it for one node. A
node restarted this way gets the same command line. Without respawn one node's exit stops the
graph, and bringup says which node exited, with its exit code and the last lines it printed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Optional, Sequence

from spatialpin_ros.graph import ARGUMENTS, RESPAWN_ARGUMENTS, NodeSpec, graph
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


def _flag(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"override {key}:={value}: expected true or false")


def _delay(key: str, value: str) -> float:
    try:
        d = float(value)
    except ValueError:
        d = -1.0
    if not d >= 0:
        raise ValueError(f"override {key}:={value}: expected seconds >= 0")
    return d


def respawn_settings(graph_name: str, overrides: Sequence[str] = ()
                     ) -> tuple[dict[str, tuple[bool, float]], list[str]]:
    """Each node's (respawn, respawn_delay): the graph's NodeSpec, then ``respawn:=`` and
    ``respawn_delay:=`` (every node), then ``NODE.respawn:=`` and ``NODE.respawn_delay:=``;
    and the other overrides, for the nodes."""
    specs = {s.name: s for s in graph(graph_name)}
    out = {n: [s.respawn, s.respawn_delay] for n, s in specs.items()}
    rest: list[str] = []
    per_node: list[tuple[str, str, str]] = []
    for o in overrides:
        key, value = o.split(":=", 1) if ":=" in o else (o, "")
        node, _, name = key.rpartition(".")
        if name not in (a[0] for a in RESPAWN_ARGUMENTS) or (node and node not in specs):
            rest.append(o)
        elif node:
            per_node.append((node, name, value))
        else:
            for v in out.values():
                v[0 if name == "respawn" else 1] = (_flag if name == "respawn" else _delay)(
                    key, value)
    for node, name, value in per_node:  # a node's own setting wins over the graph-wide one
        key = f"{node}.{name}"
        out[node][0 if name == "respawn" else 1] = (_flag if name == "respawn" else _delay)(
            key, value)
    return {n: (bool(r), float(d)) for n, (r, d) in out.items()}, rest


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Bringup:
    """Start the nodes of a graph as child processes; ``stop()`` ends them all.

    A node with respawn on (``respawn_settings``) is restarted ``respawn_delay`` s after it
    exits, by a supervisor thread; ``restarts`` counts the restarts of each node and ``exits``
    keeps the last exit of each (code and the last lines it printed)."""

    def __init__(self, graph_name: str, overrides: Sequence[str] = (), echo: bool = True,
                 log_dir: Optional[str] = None):
        self.graph_name = graph_name
        self.specs = graph(graph_name)
        self.respawn, rest = respawn_settings(graph_name, overrides)
        self.overrides = split_overrides(graph_name, rest)
        self.echo = echo
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {s.name: 0 for s in self.specs}
        self.exits: dict[str, tuple[int, str]] = {}
        self._tails: dict[str, deque] = {}
        self._pumps: dict[str, threading.Thread] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._monitor: Optional[threading.Thread] = None

    def start(self) -> "Bringup":
        for spec in self.specs:
            self._spawn(spec)
        if any(r for r, _ in self.respawn.values()):
            self._monitor = threading.Thread(target=self._supervise, daemon=True,
                                             name="bringup-respawn")
            self._monitor.start()
        return self

    def _spawn(self, spec: NodeSpec) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        cmd = node_command(spec, self.overrides.get(spec.name, ()))
        with self._lock:
            if self._stopping.is_set():
                return
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env=env, text=True, start_new_session=True)
            self.procs[spec.name] = proc
            self._tails[spec.name] = tail = deque(maxlen=5)
            mode = "a" if self.restarts[spec.name] else "w"
            t = threading.Thread(target=self._pump, args=(spec.name, proc, tail, mode),
                                 daemon=True)
            t.start()
            self._pumps[spec.name] = t
            self._threads.append(t)

    def _pump(self, name: str, proc: subprocess.Popen, tail: deque, mode: str = "w") -> None:
        logf = open(os.path.join(self.log_dir, f"{name}.log"), mode) if self.log_dir else None
        try:
            for line in proc.stdout:
                if line.strip() and "nanobind: leaked" not in line:
                    tail.append(line.rstrip()[:300])
                if logf:
                    logf.write(line)
                    logf.flush()
                if self.echo and "nanobind: leaked" not in line:
                    sys.stdout.write(f"[{name}] {line}")
                    sys.stdout.flush()
        finally:
            if logf:
                logf.close()

    def exit_reason(self, name: str) -> str:
        """How node ``name`` last exited: the exit code (or signal) and its last output lines."""
        p = self.procs.get(name)
        if p is not None and p.poll() is not None:
            pump = self._pumps.get(name)
            if pump is not None:
                pump.join(timeout=1.0)  # the last lines it printed
            self.exits[name] = (p.returncode, " | ".join(self._tails.get(name, ())))
        if name not in self.exits:
            return "running"
        code, last = self.exits[name]
        return f"{_describe_exit(code)}" + (f"; last output: {last}" if last else "")

    def _supervise(self) -> None:
        """Restart the exited nodes that have respawn on, each after its respawn_delay."""
        due: dict[str, float] = {}
        specs = {s.name: s for s in self.specs}
        while not self._stopping.is_set():
            for name, proc in list(self.procs.items()):
                respawn, delay = self.respawn[name]
                if respawn and name not in due and proc.poll() is not None:
                    why = self.exit_reason(name)
                    msg = (f"bringup: node '{name}' exited ({why}); respawning it in {delay:g} s "
                           f"(restart {self.restarts[name] + 1})")
                    log.warning(msg)
                    if self.echo:
                        print(msg, flush=True)
                    due[name] = time.monotonic() + delay
            for name, when in list(due.items()):
                if time.monotonic() >= when:
                    del due[name]
                    self.restarts[name] += 1
                    self._spawn(specs[name])
            self._stopping.wait(0.1)

    def failed(self) -> dict[str, int]:
        """Nodes that have exited and will not be restarted (respawn off), with their exit
        codes (``exit_reason(name)`` says more)."""
        return {n: p.returncode for n, p in self.procs.items()
                if p.poll() is not None and not self.respawn[n][0]}

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5.0)
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
    respawned = [n for n, (r, _) in b.respawn.items() if r]
    print(f"bringup '{graph_name}': {', '.join(b.procs)} (Ctrl-C to stop"
          + (f"; respawn on for {', '.join(respawned)}" if respawned else "") + ")", flush=True)
    code = 0
    try:
        while True:
            dead = b.failed()
            if dead:
                for name in dead:
                    print(f"bringup: node '{name}' exited ({b.exit_reason(name)}); respawn is "
                          f"off for it, so the graph stops (restart it with -p respawn:=true or "
                          f"-p {name}.respawn:=true)", flush=True)
                code = max(dead.values()) or 0
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()
    return code
