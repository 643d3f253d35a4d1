"""Task proposal: which manipulation tasks make sense in a scene.

* ``GeometricProposer``: lists feasible stack and place tasks from the priors (sizes, support
  area and stability, reachability, gripper opening), optionally steered by an instruction.
* ``VLMProposer``: asks a VLM with SpatialPIN's task prompt and constraints; every proposal is
  parsed as data, checked against the scene and for feasibility, and dropped with a reason if it
  fails; with nothing valid it falls back to the geometric proposals.
* ``self_bleu``: diversity of proposals (lower is more diverse), as the paper reports.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.core.stacking import (MAX_GRASP_WIDTH, Infeasible, check_graspable,
                                          check_support, grasp_width)
from spatialpin_ros.core.stacking import free_spot as stacking_free_spot
from spatialpin_ros.core.types import ObjectPrior, Pose, Scene
from spatialpin_ros.reasoning.facts import scene_facts
from spatialpin_ros.reasoning.resolve import COLOR_SYNONYMS, SHAPE_NOUNS

REACH = (0.25, 0.80)        # m, horizontal distance from the robot base (world origin)
PLACE_CLEARANCE = 0.005     # m between the placed object's bottom and the target's top
STACK_TOLERANCE = 0.02      # m: an object whose bottom is this close to another's top rests on it


@dataclass
class TaskProposal:
    """A manipulation task. ``place_pose``: where the moved object's box centre should end
    (world frame)."""

    description: str
    action: str
    object_id: str
    target_id: str = ""
    place_pose: Optional[Pose] = None
    scene_id: str = ""
    score: float = 0.0
    source: str = "geometric"


def _rests_on(a: ObjectPrior, b: ObjectPrior) -> bool:
    gap = (a.center[2] - a.size[2] / 2) - (b.center[2] + b.size[2] / 2)
    inside = np.linalg.norm(a.center[:2] - b.center[:2]) < 0.5 * max(b.size[:2])
    return abs(gap) < STACK_TOLERANCE and inside


def check_stack(scene: Scene, object_id: str, target_id: str) -> Optional[str]:
    """None if stacking ``object_id`` on ``target_id`` looks feasible, else the reason. The
    gripper, support and stability rules are the planner's (``core.stacking``); this adds what
    the scene says: both objects exist and are free, and lie within the arm's reach."""
    ids = {o.id: o for o in scene.objects}
    for i in (object_id, target_id):
        if i not in ids:
            return f"no object {i!r} in the scene; known: {', '.join(ids) or 'none'}"
    if object_id == target_id:
        return "an object cannot be stacked on itself"
    a, b = ids[object_id], ids[target_id]
    try:
        check_graspable(a)
        check_support(a, b)
    except Infeasible as e:
        return e.reason
    for o in scene.objects:
        if o.id not in (a.id, b.id) and _rests_on(o, b):
            return f"{b.id} already carries {o.id}"
        if o.id != a.id and _rests_on(o, a):
            return f"{a.id} carries {o.id}; move that first"
    if _rests_on(a, b):
        return f"{a.id} is already on {b.id}"
    for o in (a, b):
        r = float(np.hypot(o.center[0], o.center[1]))
        if not REACH[0] <= r <= REACH[1]:
            return f"{o.id} is {r:.2f} m from the robot base, outside its reach"
    return None


def stack_pose(scene: Scene, object_id: str, target_id: str) -> Pose:
    """Where the object's centre goes when stacked: above the target's top centre with clearance,
    keeping the object's own yaw."""
    a, b = scene.get(object_id), scene.get(target_id)
    z = b.center[2] + b.size[2] / 2 + a.size[2] / 2 + PLACE_CLEARANCE
    return Pose([b.center[0], b.center[1], z], a.pose.quaternion)


class GeometricProposer:
    """Feasible stack and place tasks from the priors, best first."""

    name = "geometric"

    def __init__(self, reachable: Optional[Callable[[Pose], bool]] = None):
        self.reachable = reachable

    def propose(self, scene: Scene, max_tasks: int = 5, instruction: str = "") -> list[TaskProposal]:
        tasks = []
        for a in scene.objects:
            for b in scene.objects:
                if a.id == b.id or check_stack(scene, a.id, b.id):
                    continue
                pose = stack_pose(scene, a.id, b.id)
                if self.reachable is not None and not self.reachable(pose):
                    continue
                # Prefer stable stacks: a wide target, a low, light-looking object on top.
                top_b = min(b.size[:2])
                score = top_b / max(a.size[:2]) - 0.5 * a.size[2] / max(a.size[:2])
                tasks.append(TaskProposal(f"stack the {a.label} on the {b.label}", "stack",
                                          a.id, b.id, pose, scene.scene_id, score))
        # Moving an object to a free spot: feasible for any graspable object that carries nothing.
        for a in scene.objects:
            if grasp_width(a) > MAX_GRASP_WIDTH or any(
                    _rests_on(o, a) for o in scene.objects if o.id != a.id):
                continue
            pose = free_spot(scene, a.id)
            if pose is None or (self.reachable is not None and not self.reachable(pose)):
                continue
            side = "left" if pose.position[1] > a.center[1] else "right"
            tasks.append(TaskProposal(f"move the {a.label} to a free spot on its {side}",
                                      "pick_and_place", a.id, "", pose, scene.scene_id, -1.0))
        tasks.sort(key=lambda t: -t.score)
        if instruction.strip():
            tasks = steer(tasks, scene, instruction)
        return tasks[:max_tasks] if max_tasks else tasks


def steer(tasks: list[TaskProposal], scene: Scene, instruction: str) -> list[TaskProposal]:
    """Order tasks by how well they fit an instruction such as "put something on the blue
    block": colour and shape words before "on" describe the moved object, after it the target."""
    text = instruction.lower()
    parts = re.split(r"\b(?:on|onto|on top of)\b", text, maxsplit=1)
    words_obj = set(re.findall(r"[a-z]+", parts[0]))
    words_tgt = set(re.findall(r"[a-z]+", parts[1])) if len(parts) > 1 else set()

    def match(o: ObjectPrior, words: set) -> int:
        words = {COLOR_SYNONYMS.get(w, w) for w in words}
        m = int(o.color_name in words)
        m += int(any(SHAPE_NOUNS.get(w.rstrip("s")) == o.shape for w in words))
        m += int(o.id in words)
        return m

    def fit(t: TaskProposal) -> int:
        m = match(scene.get(t.object_id), words_obj)
        return m + (2 * match(scene.get(t.target_id), words_tgt) if t.target_id else 0)
    return sorted(tasks, key=lambda t: (-fit(t), -t.score))


TASK_SYSTEM_PROMPT = (
    "You are a single robot arm with a two-finger gripper in front of a tabletop. Propose "
    "manipulation tasks for the objects in the scene, one per object where it makes sense. "
    "Constraints: no assembly; no cleaning or testing; use only the objects listed (no imaginary "
    "objects); the manipulated object moves and the object it interacts with stays still; all "
    "objects are rigid. The only actions are \"stack\" (put object_id on top of target_id) and "
    "\"pick_and_place\" (move object_id to a free spot on the table, target_id empty). Reply with "
    "ONE JSON object and nothing else: {\"tasks\": [{\"description\": str, \"action\": "
    "\"stack\"|\"pick_and_place\", \"object_id\": str, \"target_id\": str}]}.")


class VLMProposer:
    """Tasks from a VLM (SpatialPIN's task prompt), validated against the scene."""

    def __init__(self, client, name: str = "vlm", fallback: Optional[GeometricProposer] = None):
        self.client = client
        self.name = name
        self.fallback = fallback or GeometricProposer()
        self.last_message = ""

    def propose(self, scene: Scene, max_tasks: int = 5, instruction: str = "",
                image: Optional[np.ndarray] = None) -> list[TaskProposal]:
        prompt = scene_facts(scene)
        if instruction.strip():
            prompt += f"\n\nThe user asks: {instruction.strip()[:500]}"
        prompt += f"\n\nPropose up to {max_tasks or 5} tasks. Reply with the JSON object only."
        try:
            reply = self.client.generate(TASK_SYSTEM_PROMPT, prompt,
                                         [image] if image is not None else [], max_tokens=512)
            tasks, rejected = parse_tasks(reply.text, scene)
        except (SpatialPinError, ValueError) as e:
            tasks, rejected = [], [str(e)]
        if not tasks:
            self.last_message = (f"{self.name} proposer gave no valid task "
                                 f"({'; '.join(rejected[:3]) or 'empty reply'}); "
                                 "proposals are geometric")
            return self.fallback.propose(scene, max_tasks, instruction)
        self.last_message = (f"dropped {len(rejected)} invalid proposals: "
                             + "; ".join(rejected[:3])) if rejected else ""
        for t in tasks:
            t.source = self.name
        return tasks[:max_tasks] if max_tasks else tasks


def parse_tasks(text: str, scene: Scene) -> tuple[list[TaskProposal], list[str]]:
    """Tasks from a VLM reply (data only), each checked against the scene; returns (valid,
    reasons for the rejected)."""
    start = text.find("{")
    if start < 0:
        raise ValueError("the reply holds no JSON object")
    try:
        data, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as e:
        raise ValueError(f"the reply's JSON does not parse: {e.msg}") from None
    items = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError("the reply has no list of tasks")
    valid, rejected = [], []
    for it in items[:20]:
        if not isinstance(it, dict):
            rejected.append("a task that is not an object")
            continue
        action = str(it.get("action", ""))
        oid, tid = str(it.get("object_id", "")), str(it.get("target_id", "") or "")
        desc = str(it.get("description", ""))[:300]
        if action == "stack":
            why = check_stack(scene, oid, tid)
            if why:
                rejected.append(why)
                continue
            valid.append(TaskProposal(desc or f"stack {oid} on {tid}", "stack", oid, tid,
                                      stack_pose(scene, oid, tid), scene.scene_id))
        elif action == "pick_and_place":
            if oid not in {o.id for o in scene.objects}:
                rejected.append(f"no object {oid!r}")
                continue
            pose = free_spot(scene, oid)
            if pose is None:
                rejected.append(f"no free spot on the table for {oid}")
                continue
            valid.append(TaskProposal(desc or f"move {oid}", "pick_and_place", oid, "", pose,
                                      scene.scene_id))
        else:
            rejected.append(f"unknown action {action!r}")
    return valid, rejected


def free_spot(scene: Scene, object_id: str, step: float = 0.02) -> Optional[Pose]:
    """A free place on the table within reach for an object, nearest its current place (the
    rule of ``core.stacking.free_spot``): where its centre should go, at its own yaw."""
    a = scene.get(object_id)
    xy = stacking_free_spot(scene.objects, a, step=step)
    if xy is None:
        return None
    return Pose([xy[0], xy[1], a.size[2] / 2 + PLACE_CLEARANCE], a.pose.quaternion)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(candidate: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Sentence BLEU (uniform weights up to 4-grams, add-one smoothing from 2-grams on)."""
    if not candidate or not references:
        return 0.0
    logs = []
    for n in range(1, max_n + 1):
        cand = _ngrams(candidate, n)
        if not cand:
            logs.append(math.log(1.0 / (1 + len(candidate))))
            continue
        maxref: Counter = Counter()
        for r in references:
            maxref |= _ngrams(r, n)
        clipped = sum(min(c, maxref[g]) for g, c in cand.items())
        total = sum(cand.values())
        if n > 1:
            clipped, total = clipped + 1, total + 1
        logs.append(math.log(max(clipped, 1e-9) / total))
    ref_len = min((len(r) for r in references), key=lambda L: (abs(L - len(candidate)), L))
    bp = 1.0 if len(candidate) > ref_len else math.exp(1 - ref_len / len(candidate))
    return bp * math.exp(sum(logs) / max_n)


def self_bleu(texts: Sequence[str]) -> float:
    """Mean BLEU of each text against all the others (lower = more diverse)."""
    toks = [re.findall(r"\w+", t.lower()) for t in texts]
    if len(toks) < 2:
        return 0.0
    return float(np.mean([bleu(t, toks[:i] + toks[i + 1:]) for i, t in enumerate(toks)]))


def verify_stacked(after: Scene, before: Scene, object_id: str, target_id: str,
                   xy_tol: float = 0.025, z_tol: float = 0.015) -> tuple[bool, str]:
    """Whether the object now rests on the target, judged on a fresh perceived scene. Objects are
    found again by id, else by colour and shape (perception may renumber a moved object)."""
    def find(o: ObjectPrior) -> Optional[ObjectPrior]:
        same = [x for x in after.objects if x.id == o.id]
        if same and same[0].color_name == o.color_name:
            return same[0]
        cands = [x for x in after.objects if x.color_name == o.color_name and x.shape == o.shape]
        return min(cands, key=lambda x: np.linalg.norm(x.center - o.center)) if cands else None

    a0, b0 = before.get(object_id), before.get(target_id)
    a, b = find(a0), find(b0)
    if a is None or b is None:
        missing = a0.id if a is None else b0.id
        return False, f"{missing} is no longer seen"
    dxy = float(np.linalg.norm(a.center[:2] - b.center[:2]))
    dz = float((a.center[2] - a.size[2] / 2) - (b.center[2] + b.size[2] / 2))
    ok = dxy <= xy_tol and abs(dz) <= z_tol
    return ok, (f"{a0.id} is {dxy * 100:.1f} cm from {b0.id}'s centre horizontally and its "
                f"bottom {dz * 100:+.1f} cm from {b0.id}'s top")
