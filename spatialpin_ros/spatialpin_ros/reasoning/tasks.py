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
from spatialpin_ros.core.stacking import (MAX_GRASP_WIDTH, bottom_z, footprint, grasp_width,
                                          penetration, polygon_gap, top_z)
from spatialpin_ros.core.stacking import free_spot as stacking_free_spot
from spatialpin_ros.core.task_kinds import TaskKind, action_of, kind_of, real_objects
from spatialpin_ros.core.types import ObjectPrior, Pose, Scene
from spatialpin_ros.reasoning import task_rules as _rules
from spatialpin_ros.reasoning.task_rules import check_task, task_pose
from spatialpin_ros.reasoning.facts import scene_facts
from spatialpin_ros.reasoning.resolve import COLOR_SYNONYMS, SHAPE_NOUNS

PLACE_CLEARANCE = 0.005     # m between the placed object's bottom and the target's top
STACK_TOLERANCE = _rules.STACK_TOLERANCE


@dataclass
class TaskProposal:
    """A manipulation task. ``place_pose``: where the moved object's box centre should end
    (world frame). ``kind``: one of ``core.task_kinds.TaskKind``'s values (stack, put_in,
    place_on, place_next_to, move); ``action`` keeps its meaning: ``stack`` (on top of the
    target) or ``pick_and_place`` (put down at ``place_pose``)."""

    description: str
    action: str
    object_id: str
    target_id: str = ""
    place_pose: Optional[Pose] = None
    scene_id: str = ""
    score: float = 0.0
    source: str = "geometric"
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = kind_of(self.action).value


def _rests_on(a: ObjectPrior, b: ObjectPrior) -> bool:
    return _rules.rests_on(a, b)


def check_stack(scene: Scene, object_id: str, target_id: str) -> Optional[str]:
    """None if stacking ``object_id`` on ``target_id`` looks feasible, else the reason. The
    gripper, support and stability rules are the planner's (``core.stacking``); this adds what
    the scene says: both objects exist and are free, and lie within the arm's reach."""
    return check_task(scene, TaskKind.STACK, object_id, target_id)


def stack_pose(scene: Scene, object_id: str, target_id: str) -> Pose:
    """Where the object's centre goes when stacked: above the target's top centre with clearance,
    keeping the object's own yaw."""
    a, b = scene.get(object_id), scene.get(target_id)
    z = b.center[2] + b.size[2] / 2 + a.size[2] / 2 + PLACE_CLEARANCE
    return Pose([b.center[0], b.center[1], z], a.pose.quaternion)


_VERB = {TaskKind.STACK: "stack the {a} on the {b}", TaskKind.PUT_IN: "put the {a} in the {b}",
         TaskKind.PLACE_ON: "place the {a} on the {b}",
         TaskKind.PLACE_NEXT_TO: "place the {a} next to the {b}"}


def _pieces_of_one(a: ObjectPrior, b: ObjectPrior, gap: float = 0.01) -> bool:
    """Two touching pieces of one colour are most likely one object seen in pieces (a plate,
    a printed box): no task between them is proposed."""
    return (bool(a.color_name) and a.color_name == b.color_name
            and polygon_gap(footprint(a), footprint(b)) < gap)


def _top_piece(a: ObjectPrior, objs: Sequence[ObjectPrior]) -> bool:
    """Whether ``a`` rests on an object of its colour whose footprint holds it: most likely
    the top part of one object seen in two pieces (a bottle's neck on its body), not a thing
    to move on its own (its grasp would lift the whole object by a narrow part)."""
    return any(b.id != a.id and _pieces_of_one(a, b) and _rests_on(a, b) for b in objs)


def describe(kind: TaskKind, a: ObjectPrior, b: Optional[ObjectPrior]) -> str:
    return _VERB[kind].format(a=a.label, b=b.label if b is not None else "")


def _score(kind: TaskKind, a: ObjectPrior, b: ObjectPrior) -> float:
    """Higher first within a kind: stable stacks (a wide target, a low object), roomy
    containers and plates, and short moves."""
    if kind == TaskKind.STACK:
        return min(b.size[:2]) / max(a.size[:2]) - 0.5 * a.size[2] / max(a.size[:2])
    if kind in (TaskKind.PUT_IN, TaskKind.PLACE_ON):
        return min(b.size[:2]) / max(a.size[:2])
    return -float(np.linalg.norm(a.center[:2] - b.center[:2]))


#: An object whose outline is hidden (by something in front, or the image's edge) beyond this
#: share may go on out of sight: its box, grasp and top are uncertain.
HIDDEN_MAX = 0.12


def _partly_hidden(scene: Scene, t: TaskProposal) -> bool:
    """The task moves, or puts something on, an object partly out of sight."""
    return any(o is not None and o.hidden > HIDDEN_MAX
               for o in (scene.get(t.object_id), scene.get(t.target_id) if t.target_id else None))


#: Perceived boxes of touching objects overlap by a few millimetres; a target whose box reaches
#: deeper than this into a neighbour standing beside it took in a strip of it (two solids cannot
#: interpenetrate): its centre and top are uncertain.
OVERLAP_MAX = 0.01


def _target_overlaps(scene: Scene, t: TaskProposal) -> bool:
    """The task puts something on a target whose box reaches into the box of another object
    beside it (the one moved included; their heights overlapping by 1 cm or more) by more
    than ``OVERLAP_MAX``."""
    if not t.target_id:
        return False
    b = scene.get(t.target_id)
    fb = footprint(b)
    return any(n.id != b.id
               and min(top_z(n), top_z(b)) - max(bottom_z(n), bottom_z(b)) >= 0.01
               and penetration(footprint(n), fb) > OVERLAP_MAX for n in scene.objects)


class GeometricProposer:
    """Feasible tasks of every kind over the scene's objects (stack, put_in, place_on,
    place_next_to, then moves to a free spot), mixed: the best of each kind in turn."""

    name = "geometric"
    KINDS = (TaskKind.STACK, TaskKind.PUT_IN, TaskKind.PLACE_ON, TaskKind.PLACE_NEXT_TO)

    def __init__(self, reachable: Optional[Callable[[Pose], bool]] = None,
                 kinds: Sequence[TaskKind] = KINDS):
        self.reachable = reachable
        self.kinds = tuple(TaskKind(k) for k in kinds)

    def propose(self, scene: Scene, max_tasks: int = 5, instruction: str = "") -> list[TaskProposal]:
        per_kind: dict[TaskKind, list[TaskProposal]] = {k: [] for k in self.kinds}
        # Phantom pieces (fragments, pieces inside another object's box) are neither moved nor
        # used as targets.
        objs = real_objects(scene.objects)
        movable = [a for a in objs if not _top_piece(a, objs)]
        for kind in self.kinds:
            for a in movable:
                for b in objs:
                    if a.id == b.id or _pieces_of_one(a, b) or check_task(scene, kind, a.id,
                                                                           b.id):
                        continue
                    pose = task_pose(scene, kind, a.id, b.id)
                    if pose is None or (self.reachable is not None and not self.reachable(pose)):
                        continue
                    per_kind[kind].append(TaskProposal(
                        describe(kind, a, b), action_of(kind), a.id, b.id, pose, scene.scene_id,
                        _score(kind, a, b), kind=kind.value))
        for lst in per_kind.values():   # objects seen whole, targets apart, then the score
            lst.sort(key=lambda t: (_partly_hidden(scene, t), _target_overlaps(scene, t),
                                    -t.score))
        # One of each kind in turn, the best first; a kind's proposals keep their order.
        tasks: list[TaskProposal] = []
        for i in range(max((len(v) for v in per_kind.values()), default=0)):
            tasks += [v[i] for v in per_kind.values() if i < len(v)]
        # Moving an object to a free spot: feasible for any graspable object that carries nothing.
        for a in movable:
            if grasp_width(a) > MAX_GRASP_WIDTH or any(
                    _rests_on(o, a) for o in scene.objects if o.id != a.id):
                continue
            pose = free_spot(scene, a.id)
            if pose is None or (self.reachable is not None and not self.reachable(pose)):
                continue
            side = "left" if pose.position[1] > a.center[1] else "right"
            tasks.append(TaskProposal(f"move the {a.label} to a free spot on its {side}",
                                      "pick_and_place", a.id, "", pose, scene.scene_id, -1.0,
                                      kind=TaskKind.MOVE.value))
        if instruction.strip():
            tasks = steer(tasks, scene, instruction)
        return tasks[:max_tasks] if max_tasks else tasks


_KIND_WORDS = ((TaskKind.PLACE_NEXT_TO, r"\b(?:next to|beside|by)\b"),
               (TaskKind.PUT_IN, r"\b(?:in|into|inside)\b"),
               (TaskKind.STACK, r"\b(?:stack|on top of)\b"),
               (TaskKind.PLACE_ON, r"\b(?:on|onto)\b"))


def steer(tasks: list[TaskProposal], scene: Scene, instruction: str) -> list[TaskProposal]:
    """Order tasks by how well they fit an instruction such as "put something on the blue
    block": colour and shape words before "on" ("in", "next to", ...) describe the moved object,
    after it the target; the relation word favours its kind."""
    text = instruction.lower()
    parts = re.split(r"\b(?:on top of|onto|on|into|inside|in|next to|beside)\b", text,
                     maxsplit=1)
    words_obj = set(re.findall(r"[a-z]+", parts[0]))
    words_tgt = set(re.findall(r"[a-z]+", parts[1])) if len(parts) > 1 else set()
    wanted = next((k for k, pat in _KIND_WORDS if re.search(pat, text)), None)

    def match(o: ObjectPrior, words: set) -> int:
        words = {COLOR_SYNONYMS.get(w, w) for w in words}
        m = int(o.color_name in words)
        m += int(any(SHAPE_NOUNS.get(w.rstrip("s")) == o.shape for w in words))
        m += int(o.id in words)
        return m

    def fit(t: TaskProposal) -> int:
        m = match(scene.get(t.object_id), words_obj)
        m += 2 * match(scene.get(t.target_id), words_tgt) if t.target_id else 0
        if wanted is not None and t.kind == wanted.value:
            m += 1
        elif wanted == TaskKind.PLACE_ON and t.kind == TaskKind.STACK.value:
            m += 1  # "on the blue block": a stack
        return m
    return sorted(tasks, key=lambda t: (-fit(t), -t.score))


TASK_SYSTEM_PROMPT = (
    "You are a single robot arm with a two-finger gripper in front of a tabletop. Propose "
    "manipulation tasks for the objects in the scene, one per object where it makes sense. "
    "Constraints: no assembly; no cleaning or testing; use only the objects listed (no imaginary "
    "objects); the manipulated object moves and the object it interacts with stays still; all "
    "objects are rigid. The kinds of task are \"stack\" (put object_id on the flat top of "
    "target_id), \"put_in\" (into target_id, a container), \"place_on\" (onto target_id, a "
    "plate or tray), \"place_next_to\" (on the table beside target_id) and \"move\" (to a free "
    "spot on the table, target_id empty). Reply with ONE JSON object and nothing else: "
    "{\"tasks\": [{\"description\": str, \"kind\": \"stack\"|\"put_in\"|\"place_on\"|"
    "\"place_next_to\"|\"move\", \"object_id\": str, \"target_id\": str}]}.")


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
        action = str(it.get("action", "") or "")
        oid, tid = str(it.get("object_id", "")), str(it.get("target_id", "") or "")
        desc = str(it.get("description", ""))[:300]
        try:
            kind = kind_of("", str(it.get("kind", "") or "")) if it.get("kind") else (
                TaskKind(action) if action in {k.value for k in TaskKind} else kind_of(action))
        except ValueError:
            rejected.append(f"unknown action {action[:40]!r}" if not it.get("kind")
                            else f"unknown kind {str(it.get('kind'))[:40]!r}")
            continue
        why = check_task(scene, kind, oid, tid if kind != TaskKind.MOVE else "")
        if why:
            rejected.append(why)
            continue
        if kind == TaskKind.MOVE:
            pose = free_spot(scene, oid)
            if pose is None:
                rejected.append(f"no free spot on the table for {oid}")
                continue
            valid.append(TaskProposal(desc or f"move {oid}", "pick_and_place", oid, "", pose,
                                      scene.scene_id, kind=kind.value))
            continue
        pose = task_pose(scene, kind, oid, tid)
        if pose is None:
            rejected.append(f"no place for {oid} {kind.value} {tid}")
            continue
        valid.append(TaskProposal(desc or f"{kind.value} {oid} {tid}", action_of(kind), oid, tid,
                                  pose, scene.scene_id, kind=kind.value))
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
