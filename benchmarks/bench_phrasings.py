"""Questions as people ask them (issue 11): the team's phrasing corpus, asked about simulated
scenes, answered by the geometric backend from PERCEIVED priors, scored against the same
meaning computed on the simulator's TRUE boxes.

    scripts/run python benchmarks/bench_phrasings.py [--scenes 30] [--per-family 2]
        [--noise on|off] [--priors perceived|truth] [--no-ros]

The corpus (benchmarks/data/phrasings.yaml) holds families of templates; each family says what
its questions mean. Per scene and family, templates are taken in turn and their slots filled
from the scene's objects: object phrases ("the light blue cube", "the block that is red", "the
cylinder on the left"), units (" in inches", "how many centimeters ..."), sets ("red things",
"blocks"). The truth is computed from the family's meaning on the true boxes by id, without the
parser. Scores:

* understood: the parser typed the question as its family means (kind and name);
* correct: yes/no, which-of-two, superlatives, sides and counts right; numbers within
  0.75-1.33x of the truth (the paper's middle band; 0.9-1.11x reported too) and in the unit
  asked; directions within 30 degrees of the true bearing;
* refused correctly: must-refuse questions answered with success false and a reason.

Questions are asked only about objects perception found (matched to a true object of the same
colour within MATCH_M) with at least MIN_VISIBLE_PX visible pixels; counts and superlatives
only in scenes where perception found exactly the visible objects. Near-ties are not asked
(thresholds as bench_spatial_qa's MARGINS). ``--priors truth`` answers from the true boxes
instead, which isolates reading from perception.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from bench_spatial_qa import MARGINS, MIN_VISIBLE_PX, non_square_box  # noqa: E402

from spatialpin_ros.perception import make_backend  # noqa: E402
from spatialpin_ros.reasoning.engine import SpatialQA  # noqa: E402
from spatialpin_ros.reasoning.geometric import GeometricAnswerer  # noqa: E402
from spatialpin_ros.reasoning.measures import (ROBOT_BASE, distance_to, fold_axis_angle,  # noqa
                                               long_axis_yaw, object_dims, surface_gap, top,
                                               volume)
from spatialpin_ros.reasoning.query import Query, QuestionError, parse_question  # noqa: E402
from spatialpin_ros.reasoning.superlatives import SUPERLATIVES  # noqa: E402
from spatialpin_ros.reasoning.units import convert  # noqa: E402
from spatialpin_ros.reasoning.viewer import ViewerFrame  # noqa: E402
from spatialpin_ros.sim.depth_noise import apply_d435_noise  # noqa: E402
from spatialpin_ros.sim.scene_spec import random_scene  # noqa: E402
from spatialpin_ros.sim.world import SimWorld  # noqa: E402

CORPUS = Path(__file__).parent / "data" / "phrasings.yaml"
MATCH_M = 0.05          # a perceived object within this of a true one of the same colour is it
DIRECTION_DEG = 30.0    # a direction is right within this of the true bearing
DIRECTION_MIN_M = 0.06  # direction questions only about objects at least this far apart
QUAL = {"relation", "choice", "side", "superlative", "count", "exists", "count_relative"}
PLURAL = {"box": "boxes", "cuboid": "cuboids"}
#: nouns that name one primitive shape only (position forms and subsets use these: "the
#: container on the left" would be among boxes and cylinders alike)
SPECIFIC = {"block", "cube", "box", "brick", "crate", "cuboid", "cylinder", "can", "tin", "tube",
            "bottle", "ball", "sphere", "marble", "orb"}


@dataclass
class Asked:
    family: str
    text: str
    expect: tuple[str, str]          # (kind, name) the family means
    truth: Query                     # the meaning, with true ids as refs
    truth_scene: object
    pairs: dict                      # true id -> perceived id


# --------------------------------------------------------------------------- scenes
def match(truth, pred) -> dict:
    """True id -> perceived id: same colour, nearest centre within MATCH_M, one to one."""
    out, used = {}, set()
    for t in truth.objects:
        best = None
        for p in pred.objects:
            if p.id in used or p.color_name != t.color_name:
                continue
            d = float(np.linalg.norm(p.center - t.center))
            if d < MATCH_M and (best is None or d < best[0]):
                best = (d, p.id)
        if best:
            out[t.id] = best[1]
            used.add(best[1])
    return out


# --------------------------------------------------------------------------- slots
class Filler:
    """Fills template slots from a scene's true objects, with the corpus's words."""

    def __init__(self, corpus: dict, rng: np.random.Generator):
        self.c, self.rng = corpus, rng

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def object_phrase(self, o, objs, viewer) -> str:
        nouns = self.c["nouns"].get(o.shape, ["object"])
        same = [x for x in objs if x.shape == o.shape]
        if len(same) >= 2 and self.rng.random() < 0.2:
            xs = sorted(same, key=lambda x: float(x.center @ viewer.right))
            side = "left" if o is xs[0] else "right" if o is xs[-1] else None
            gap = abs(float((xs[0].center - xs[1].center) @ viewer.right)) if side == "left" \
                else abs(float((xs[-1].center - xs[-2].center) @ viewer.right))
            if side and gap > MARGINS["lateral_m"]:
                noun = self.pick([n for n in nouns if n in SPECIFIC])
                return self.pick(self.c["position_forms"][side]).format(n=noun)
        form = self.pick(self.c["object_forms"])
        return form.format(c=self.pick(self.c["colors"][o.color_name]), n=self.pick(nouns))

    def unit(self, quantity: Optional[str], template: str) -> tuple[str, str, str]:
        """(in_unit phrase, units word, unit symbol asked or "")."""
        if quantity is None:
            return "", "", ""
        table = self.c["units"][quantity]
        if "{units}" in template:
            sym = self.pick(sorted(table))
            return "", self.pick(table[sym]["units"]), sym
        if self.rng.random() < 0.5:
            return "", "", ""
        sym = self.pick(sorted(table))
        return self.pick(table[sym]["in_unit"]), "", sym

    def group(self, objs) -> tuple[str, Optional[str], Optional[str]]:
        """(plural set phrase, palette colour or None, shape or None)."""
        r = self.rng.random()
        colors = sorted({o.color_name for o in objs})
        color = self.pick(colors) if colors and self.rng.random() < 0.8 else \
            self.pick(sorted(self.c["colors"]))
        shape = self.pick(sorted(self.c["nouns"]))
        noun = self.pick([n for n in self.c["nouns"][shape] if n in SPECIFIC])
        plural = PLURAL.get(noun, noun + "s")
        if r < 0.2:
            return self.pick(self.c["groups"]["all"]), None, None
        if r < 0.5:
            return f"{color} {self.pick(['objects', 'things', 'items'])}", color, None
        if r < 0.8:
            return plural, None, shape
        return f"{color} {plural}", color, shape


# --------------------------------------------------------------------------- truth
def _rel_margin(name: str, a, b, v: ViewerFrame) -> bool:
    """Whether relation ``name`` between a and b is clear of a near-tie."""
    m = MARGINS
    d = v.to_viewer(b.center - a.center)
    if name in ("left_of", "right_of", "left_right"):
        return abs(d[0]) > m["lateral_m"]
    if name in ("in_front_of", "behind", "front_behind"):
        return abs(d[1]) > m["lateral_m"]
    if name in ("above", "below", "above_below"):
        return abs(d[2]) > m["lateral_m"]
    if name.endswith("camera"):
        return abs(distance_to(a, v.eye) - distance_to(b, v.eye)) > m["camera_m"]
    if name.endswith("robot"):
        return abs(distance_to(a, ROBOT_BASE) - distance_to(b, ROBOT_BASE)) > m["camera_m"]
    if name in ("bigger", "smaller", "heavier", "lighter"):
        r = volume(a) / volume(b)
        return max(r, 1 / r) > m["volume_ratio"]
    if name in ("taller", "shorter"):
        return abs(a.size[2] - b.size[2]) > m["height_m"]
    if name in ("wider", "thinner"):
        return abs(object_dims(a, v)[0] - object_dims(b, v)[0]) > m["height_m"]
    if name == "next_to":
        g = surface_gap(a, b)
        return g < m["next_to_yes_m"] or g > m["next_to_no_m"]
    return True


_SUP_MARGIN = {"height": MARGINS["height_m"], "volume": None, "dist": MARGINS["camera_m"],
               "lateral": MARGINS["lateral_m"], "width": MARGINS["height_m"]}


def _sup_clear(name: str, cands, v, anchor) -> bool:
    if len(cands) < 2:
        return False
    score, want_max, _ = SUPERLATIVES[name]
    s = sorted((score(o, v, anchor) for o in cands), reverse=want_max)
    if name in ("biggest", "smallest", "heaviest", "lightest"):
        r = s[0] / max(s[1], 1e-12)
        return max(r, 1 / r) > MARGINS["volume_ratio"]
    return abs(s[0] - s[1]) > (MARGINS["height_m"] if name in ("tallest", "shortest", "widest",
                                                               "thinnest", "highest", "lowest")
                               else MARGINS["lateral_m"])


def metric_clear(name: str, a, b) -> bool:
    if name == "gap":
        return surface_gap(a, b) > MARGINS["gap_min_m"]
    if name == "vertical_distance":
        return abs(a.center[2] - b.center[2]) > MARGINS["vertical_min_m"]
    if name == "top_difference":
        return abs(top(a) - top(b)) > MARGINS["vertical_min_m"]
    return True


# --------------------------------------------------------------------------- questions
class Builder:
    """Questions of every family for one scene."""

    def __init__(self, corpus, truth, spec, pairs, filler, rng, full_scene: bool):
        self.corpus, self.truth, self.pairs, self.f, self.rng = corpus, truth, pairs, filler, rng
        self.v = ViewerFrame.from_camera(truth.camera_pose)
        self.objs = [o for o in truth.objects if o.num_points >= MIN_VISIBLE_PX
                     and o.id in pairs]
        self.visible = truth.replace(objects=self.objs)
        self.full = full_scene
        self.on = {o.name: o.on for o in spec.objects}
        self.pred = None

    def perception_ok(self, q: Query, pred) -> bool:
        """Whether perception got the question's objects right: the same shape, and no other
        perceived object of the same colour (all visible objects for counts and
        superlatives)."""
        ids = [o.id for o in self.objs] if q.kind in ("count", "exists", "superlative",
                                                     "count_relative") else q.refs
        for tid in ids:
            t = self.truth.get(tid)
            p = pred.get(self.pairs[tid]) if tid in self.pairs else None
            if p is None or p.shape != t.shape or \
                    sum(o.color_name == t.color_name for o in pred.objects) != 1:
                return False
        return True

    def phrase(self, o) -> str:
        return self.f.object_phrase(o, self.objs, self.v)

    def build(self, fam: str, spec: dict, template) -> Optional[tuple[str, Query]]:
        kind = spec["truth"]["kind"]
        name = spec["truth"].get("name", kind)
        if isinstance(template, list):
            name, template = template
        qty = spec.get("unit")
        in_unit, units, sym = self.f.unit(qty, template)
        fill = {"in_unit": in_unit, "units": units}
        objs = list(self.objs)
        self.rng.shuffle(objs)
        refs: list = []
        group = ""
        if kind == "refuse":
            if not objs:
                return None
            fill["a"] = self.phrase(objs[0])
        elif kind in ("count", "exists"):
            if not self.full:
                return None
            phrase, color, shape = self.f.group(self.objs)
            fill["group"] = phrase
            group = json.dumps([color, shape])
        elif kind == "superlative":
            if not self.full:
                return None
            found = self._superlative(name, template, fill)
            if found is None:
                return None
            refs, group = found
        elif kind == "count_relative":
            if not self.full or not objs:
                return None
            a = objs[0]
            if not all(_rel_margin(name, o, a, self.v) for o in self.objs if o is not a):
                return None
            fill["a"], refs = self.phrase(a), [a.id]
        else:
            found = self._pair_or_one(kind, name, spec, template, objs, fill)
            if found is None:
                return None
            refs = found
        text = template.format(**fill)
        text = text[0].upper() + text[1:]
        return text, Query(kind, name, refs, text, asked_unit=sym, group=group)

    def _superlative(self, name, template, fill):
        cands, group = list(self.objs), ""
        anchor = None
        if "{a}" in template:
            if not self.objs:
                return None
            anchor = self.objs[int(self.rng.integers(len(self.objs)))]
            fill["a"] = self.phrase(anchor)
            cands = [o for o in cands if o is not anchor]
        if "{kind}" in template:
            shape = self.f.pick(sorted({o.shape for o in self.objs}))
            if self.rng.random() < 0.3:
                fill["kind"] = self.f.pick(self.corpus["groups"]["kind_all"])
            else:
                fill["kind"] = self.f.pick([n for n in self.corpus["nouns"][shape]
                                            if n in SPECIFIC])
                cands = [o for o in cands if o.shape == shape]
                group = shape
        if not _sup_clear(name, cands, self.v, anchor):
            return None
        return ([anchor.id] if anchor else []), group

    def _pair_or_one(self, kind, name, spec, template, objs, fill):
        need = spec.get("needs", "")
        two = "{b}" in template
        if "shapes" in spec:
            objs = [o for o in objs if o.shape in spec["shapes"]]
        if need == "oriented_one":
            objs = [o for o in objs if non_square_box(o) and fold_axis_angle(
                math.degrees(long_axis_yaw(o)) - math.degrees(
                    math.atan2(self.v.away[1], self.v.away[0]))) > MARGINS["angle_min_deg"]]
        if need == "oriented_pair":
            objs = [o for o in objs if non_square_box(o)]
        if not objs or (two and len(objs) < 2):
            return None
        if not two:
            fill["a"] = self.phrase(objs[0])
            return [objs[0].id]
        for i, a in enumerate(objs):
            for b in objs[i + 1:]:
                if self.rng.random() < 0.5:
                    a, b = b, a
                if self._pair_ok(kind, name, need, a, b):
                    fill["a"], fill["b"] = self.phrase(a), self.phrase(b)
                    return [a.id, b.id]
        return None

    def _pair_ok(self, kind, name, need, a, b) -> bool:
        if kind in ("relation", "choice", "side"):
            if name == "on_top_of":
                stacked = self.on.get(a.id) == b.id or self.on.get(b.id) == a.id
                clear = abs((a.center[2] - a.size[2] / 2) - top(b)) > 0.03
                return stacked or (clear and self.rng.random() < 0.3)
            return _rel_margin(name, a, b, self.v)
        if kind == "metric":
            return metric_clear(name, a, b)
        if name == "direction":
            return float(np.hypot(*(b.center - a.center)[:2])) > DIRECTION_MIN_M
        if need == "oriented_pair":
            return fold_axis_angle(math.degrees(long_axis_yaw(b) - long_axis_yaw(a))) > \
                MARGINS["angle_min_deg"]
        return True


# --------------------------------------------------------------------------- truth & score
def true_answer(q: Query, scene):
    """The family's meaning computed on the true boxes (ids as refs; sets by colour / shape)."""
    geo = GeometricAnswerer()
    if q.kind in ("count", "exists"):
        color, shape = json.loads(q.group)
        hits = [o for o in scene.objects if (color is None or o.color_name == color)
                and (shape is None or o.shape == shape)]
        return float(len(hits)) if q.kind == "count" else float(bool(hits))
    if q.kind == "superlative":
        sub = scene if not q.group else scene.replace(
            objects=[o for o in scene.objects if o.shape == q.group or
                     (q.refs and o.id == q.refs[0])])
        return geo.answer(Query("superlative", q.name, q.refs), sub).object_ids[0]
    a = geo.answer(Query(q.kind, q.name, q.refs, asked_unit=""), scene)
    if q.kind == "choice":
        return a.object_ids[0]
    return a.value


def score(item: Asked, ans) -> dict:
    q = item.truth
    if q.kind == "refuse":
        return {"refused": (not ans.success) and bool(ans.message.strip())}
    t = true_answer(q, item.truth_scene)
    if not ans.success:
        return {"correct": False, "truth": t, "pred": None}
    if q.kind in ("choice", "superlative"):
        pred = ans.object_ids[0] if ans.object_ids else None
        return {"correct": item.pairs.get(t) == pred, "truth": t, "pred": pred}
    if q.kind in QUAL:
        return {"correct": ans.value == t, "truth": t, "pred": ans.value}
    if q.name == "direction":
        err = abs((ans.value - t + 180.0) % 360.0 - 180.0)
        return {"correct": err <= DIRECTION_DEG, "truth": t, "pred": ans.value}
    want = q.asked_unit or ("m" if q.kind == "metric" else "deg")
    if not math.isfinite(ans.value) or ans.unit != want or not math.isfinite(t) or t <= 0:
        return {"correct": False, "truth": t, "pred": ans.value, "unit": ans.unit}
    r = ans.value / convert(t, "m" if q.kind == "metric" else "deg", want)
    return {"correct": 0.75 <= r <= 1.33, "tight": 0.9 <= r <= 1.11, "ratio": r,
            "truth": t, "pred": ans.value, "unit": ans.unit}


def understood(item: Asked, labels) -> bool:
    try:
        p = parse_question(item.text, labels)
    except QuestionError:
        return False
    return (p.kind, p.name) == item.expect and \
        (not item.truth.asked_unit or p.asked_unit == item.truth.asked_unit)


# --------------------------------------------------------------------------- run
def run(args) -> dict:
    corpus = yaml.safe_load(CORPUS.read_text())
    fams = corpus["families"]
    rng = np.random.default_rng(args.seed0)
    backend = make_backend("geometric")
    qa = SpatialQA()
    rows, ask_ms, used_templates = [], [], set()
    skipped_scenes = 0
    for k in range(args.scenes):
        seed = args.seed0 + k
        spec = random_scene(seed)
        with SimWorld(spec) as w:
            frame, seg = w.render(with_segmentation=True)
            truth = w.ground_truth(seg)
        if args.priors == "truth":
            pred = truth.replace(objects=[o for o in truth.objects
                                          if o.num_points >= MIN_VISIBLE_PX])
        else:
            if args.noise == "on":
                frame.depth = apply_d435_noise(frame.depth, frame.rgb,
                                               np.random.default_rng(seed))
            backend.reset()
            pred = backend.perceive(frame)
        pairs = match(truth, pred)
        visible = {o.id for o in truth.objects if o.num_points >= MIN_VISIBLE_PX}
        full = visible <= set(pairs) and len(pred.objects) == len(visible)
        skipped_scenes += not full
        b = Builder(corpus, truth, spec, pairs, Filler(corpus, rng), rng, full)
        labels = [o.label for o in pred.objects]
        for fam, fspec in fams.items():
            tpls = fspec["templates"]
            for j in range(args.per_family):
                idx = (k * args.per_family + j) % len(tpls)
                built = b.build(fam, fspec, tpls[idx])
                if built is None:
                    continue
                text, q = built
                used_templates.add((fam, idx))
                item = Asked(fam, text, (q.kind, q.name), q, b.visible, pairs)
                t0 = time.perf_counter()
                ans = qa.ask(text, pred)
                ask_ms.append(1000 * (time.perf_counter() - t0))
                s = score(item, ans)
                if q.kind != "refuse":
                    s["understood"] = understood(item, labels)
                    s["perception_ok"] = b.perception_ok(q, pred)
                    if args.priors == "perceived":  # the same words on the true boxes
                        t_item = Asked(fam, text, item.expect, q, b.visible,
                                       {o.id: o.id for o in b.visible.objects})
                        s["correct_true_priors"] = score(
                            t_item, qa.ask(text, b.visible))["correct"]
                rows.append({"seed": seed, "family": fam, "template": idx, "q": text,
                             "refs": list(q.refs), "used": list(ans.object_ids or []),
                             "ok": ans.success, "answer": ans.answer[:160],
                             "msg": ans.message[:200], **{k2: (v if not isinstance(v, float)
                                                               or math.isfinite(v) else None)
                                                          for k2, v in s.items()}})
    return {"rows": rows, "ask_ms": ask_ms, "templates_used": len(used_templates),
            "scenes_incomplete": skipped_scenes}


GROUPS = [("is_", "yes/no relations"), ("which_", "which of two"), ("side_", "sides in words"),
          ("distance_", "distances"), ("top_to_top", "distances"), ("size_", "sizes"),
          ("angle_", "angles"), ("direction", "directions (clock)"),
          ("superlative", "superlatives"), ("count", "counts and existence"),
          ("exists", "counts and existence"), ("refuse", "must refuse")]


def group_of(family: str) -> str:
    return next(g for prefix, g in GROUPS if family.startswith(prefix))


def summarise(rows) -> dict:
    asked = [r for r in rows if "understood" in r]
    refuse = [r for r in rows if "refused" in r]
    fam = defaultdict(list)
    for r in rows:
        fam[r["family"]].append(r)
    per = {}
    for f, rs in sorted(fam.items()):
        if "refused" in rs[0]:
            per[f] = {"n": len(rs), "refused": float(np.mean([r["refused"] for r in rs]))}
        else:
            per[f] = {"n": len(rs), "understood": float(np.mean([r["understood"] for r in rs])),
                      "correct": float(np.mean([r["correct"] for r in rs]))}
    groups = defaultdict(list)
    for r in rows:
        groups[group_of(r["family"])].append(r)
    by_group = {}
    for g, rs in groups.items():
        key = "refused" if "refused" in rs[0] else "correct"
        by_group[g] = {"n": len(rs), key: float(np.mean([r[key] for r in rs]))}
        if key == "correct":
            by_group[g]["understood"] = float(np.mean([r["understood"] for r in rs]))
            if "correct_true_priors" in rs[0]:
                by_group[g]["correct_true_priors"] = float(np.mean(
                    [r["correct_true_priors"] for r in rs]))
    tight = [r for r in asked if "tight" in r]
    ok = [r for r in asked if r["perception_ok"]]
    extra = {}
    if asked and "correct_true_priors" in asked[0]:
        wrong = [r for r in asked if not r["correct"]]
        extra = {"correct_same_words_true_priors": float(np.mean(
                     [r["correct_true_priors"] for r in asked])),
                 "wrong_but_right_on_true_priors": float(np.mean(
                     [r["correct_true_priors"] for r in wrong])) if wrong else None}
    return {"asked": len(asked), "must_refuse": len(refuse),
            "understood": float(np.mean([r["understood"] for r in asked])),
            "correct": float(np.mean([r["correct"] for r in asked])),
            "correct_when_understood": float(np.mean([r["correct"] for r in asked
                                                      if r["understood"]])),
            "numbers_0.9-1.11x": float(np.mean([r["tight"] for r in tight])) if tight else None,
            "refused_correctly": float(np.mean([r["refused"] for r in refuse])),
            "asked_perception_ok": len(ok),
            "correct_perception_ok": float(np.mean([r["correct"] for r in ok])) if ok else None,
            **extra,
            "families": len(fam), "by_group": by_group, "per_family": per}


def corpus_size() -> dict:
    c = yaml.safe_load(CORPUS.read_text())
    tpls = [(t[1] if isinstance(t, list) else t) for f in c["families"].values()
            for t in f["templates"]]
    n_units = {q: sum(len(u["in_unit"]) for u in c["units"][q].values()) for q in c["units"]}
    n_words = {q: sum(len(u["units"]) for u in c["units"][q].values()) for q in c["units"]}
    variants = 0
    for f in c["families"].values():
        for t in f["templates"]:
            t = t[1] if isinstance(t, list) else t
            q = f.get("unit")
            variants += 1 if q is None else (n_words[q] if "{units}" in t else
                                            1 + n_units[q] if "{in_unit}" in t else 1)
    return {"families": len(c["families"]), "templates": len(set(tpls)),
            "templates_with_unit_variants": variants}


def round_trip(n_calls: int) -> dict:
    """/spatialpin/ask round trip with free phrasings (bench_spatial_qa's harness)."""
    from bench_spatial_qa import ros_round_trip

    def questions(scene):
        a, b = scene.objects[0], scene.objects[1]
        na = {"box": "block", "cylinder": "can", "sphere": "ball"}.get(a.shape, "object")
        nb = {"box": "cube", "cylinder": "cylinder", "sphere": "sphere"}.get(b.shape, "object")
        return [f"Could you tell me how far the {a.color_name} {na} is from the "
                f"{nb} that is {b.color_name}, in centimeters?",
                f"From the viewer's perspective, is the {a.color_name} {na} to the left of the "
                f"{b.color_name} {nb}?",
                "Which object is closest to the robot?", "How many objects are there?"]
    return ros_round_trip(n_calls, questions=questions)


def heldout(path: Optional[Path] = None) -> dict:
    """Reading score on held-out phrasings (never used to change the parser)."""
    items = yaml.safe_load((path or CORPUS.parent / "heldout_phrasings.yaml").read_text())
    misses = []
    for text, kind, name in items:
        try:
            q = parse_question(text)
            got = (q.kind, q.name)
        except QuestionError:
            got = None
        if got != (kind, name):
            misses.append({"q": text, "want": [kind, name], "got": got})
    return {"n": len(items), "understood": 1 - len(misses) / len(items), "misses": misses}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=30)
    ap.add_argument("--seed0", type=int, default=3000)
    ap.add_argument("--per-family", type=int, default=2)
    ap.add_argument("--noise", choices=("on", "off"), default="on")
    ap.add_argument("--priors", choices=("perceived", "truth"), default="perceived")
    ap.add_argument("--no-ros", action="store_true", help="skip the ROS round-trip timing")
    ap.add_argument("--heldout", action="store_true",
                    help="only score reading on benchmarks/data/heldout_phrasings.yaml")
    ap.add_argument("--heldout-file", default="",
                    help="with --heldout: another held-out file (default "
                         "benchmarks/data/heldout_phrasings.yaml)")
    ap.add_argument("--out", default="benchmarks/results/phrasings.json")
    args = ap.parse_args()
    if args.heldout:
        print(json.dumps(heldout(Path(args.heldout_file) if args.heldout_file else None),
                         indent=1))
        return
    t0 = time.time()
    r = run(args)
    s = summarise(r["rows"])
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "args": vars(args),
              "corpus": corpus_size(), "templates_used": r["templates_used"],
              "scenes_incomplete_perception": r["scenes_incomplete"], "summary": s,
              "core_ask_ms_median": statistics.median(r["ask_ms"])}
    if not args.no_ros:
        report["ros_ask_round_trip"] = round_trip(200)
    report["wall_s"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    Path(args.out).with_suffix(".rows.json").write_text(json.dumps(r["rows"], indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "summary"}, indent=1))
    print(json.dumps({k: v for k, v in s.items() if k not in ("per_family", "by_group")},
                     indent=1))
    print("\n| group | n | understood | correct (or refused) | same words, true priors |")
    print("| --- | --- | --- | --- | --- |")
    for g, v in s["by_group"].items():
        pct = lambda k: f"{100 * v[k]:.1f} %" if k in v else ""  # noqa: E731
        print(f"| {g} | {v['n']} | {pct('understood')} | {pct('correct') or pct('refused')} | "
              f"{pct('correct_true_priors')} |")
    print("\n| family | n | understood | correct or refused |\n| --- | --- | --- | --- |")
    for f, v in s["per_family"].items():
        c = v.get("correct", v.get("refused"))
        print(f"| {f} | {v['n']} | {100 * v['understood']:.1f} % |" if "understood" in v else
              f"| {f} | {v['n']} | (must refuse) |", f"{100 * c:.1f} % |")


if __name__ == "__main__":
    main()
