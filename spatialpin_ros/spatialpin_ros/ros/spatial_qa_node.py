"""Spatial reasoning node: the ``/spatialpin/ask`` service (AskSpatial) and the
``/spatialpin/propose_tasks`` service (ProposeTasks).

Keeps the last ``scene_history`` scenes from the perception node (ScenePriors), with the colour
image and scene cloud of each (matched by stamp), and answers questions with the geometric
backend or a VLM backend (openai-compatible server, or a local transformers model), chosen by
``default_backend`` or per request. Questions about two views use ``reference_scene_id``: with
known camera poses (both scenes in ``world_frame``) the poses are compared; for scenes in a
support-plane gravity frame (no camera pose known) the clouds are registered.

An empty scene perception could not use (ScenePriors status other than "ok": no valid depth, no
support plane, a bad image) never replaces the last good scene: it is logged (throttled) and
remembered by id, so a question about that id is refused with its status and reason.

Every callback is a boundary: a malformed message (a zero or NaN quaternion, an over-long id) is
logged with the reason and dropped, and the node keeps running. A scene stamped older than the
newest one (time going backwards) is kept by id but never becomes the latest scene; it is logged.
Inputs echoed in answers or logs are cut to a few hundred characters (``conversions.bounded``).

Secrets: ``openai.base_url`` and ``openai.api_key_env`` are read-only after start-up (a
``set_parameters`` call to change them is refused with the reason), so a neighbour on the ROS
network cannot point the key at another host. ``openai.model`` and ``openai.timeout_s`` may change
at runtime; the client is then re-created on the next request.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Optional

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, PointCloud2
from spatialpin_interfaces.msg import ScenePriors
from spatialpin_interfaces.srv import AskSpatial, ProposeTasks
from std_msgs.msg import String
from std_srvs.srv import Trigger

from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.core.history import put_newest, trim_oldest
from spatialpin_ros.core.types import PerceptionStatus, Scene
from spatialpin_ros.reasoning.engine import SpatialQA
from spatialpin_ros.reasoning.geometric import Answer
from spatialpin_ros.reasoning.registration import camera_motion, register_scenes
from spatialpin_ros.ros import conversions as conv
from spatialpin_ros.ros.node_main import run_node
from spatialpin_ros.ros.params import Param, declare_params, non_negative, one_of, positive
from spatialpin_ros.ros.sim_node import LATCHED, SERVICE_QOS
from spatialpin_ros.ros.viz import cloud_from_msg
from spatialpin_ros.vlm.lazy import LazyVLMs

PARAMS = {
    "default_backend": Param("geometric", "Backend when a request names none: geometric, openai "
                             "or transformers", one_of("geometric", "openai", "transformers")),
    "openai.base_url": Param("http://127.0.0.1:8000/v1", "Base URL of an OpenAI-compatible "
                             "server (OpenAI, vLLM, Ollama, llama.cpp, transformers serve); "
                             "read-only after start-up (the API key goes only there)",
                             read_only=True),
    "openai.model": Param("gpt-4o", "Model name sent to the OpenAI-compatible server"),
    "openai.api_key_env": Param("OPENAI_API_KEY", "Environment variable holding the API key "
                                "(never logged; may be unset for local servers); read-only after "
                                "start-up", read_only=True),
    "openai.timeout_s": Param(30.0, "Seconds to wait for the server before falling back to the "
                              "geometric answer", positive),
    "transformers.model": Param("", "Hugging Face id or local path of an image-text-to-text "
                                "model for the transformers backend (empty = not available)"),
    "transformers.device": Param("auto", "Device of the transformers backend: auto, cpu, cuda"),
    "transformers.decode": Param("auto", "Greedy decoding of the transformers backend: auto "
                                 "(graphs on CUDA, else generate), generate, graphs, compile, "
                                 "eager", one_of("auto", "generate", "graphs", "compile",
                                                 "eager")),
    "transformers.encode_threads": Param(4, "Torch intra-op threads, at most, for the "
                                         "transformers backend's processor on the host (0 = "
                                         "torch's own setting; many threads made the time to "
                                         "first token erratic on a 16-core GPU host)",
                                         non_negative),
    "views": Param("none", "ZeroVLM novel views added to VLM prompts: none, single or multi",
                   one_of("none", "single", "multi")),
    "view_names": Param(["left"], "Views for single mode: left, right, top or an orbit angle in "
                        "degrees"),
    "max_tokens": Param(256, "Most tokens a VLM may generate per answer", positive),
    "world_frame": Param("world", "Frame of scenes whose camera poses are known"),
    "plane_frame": Param("support_plane", "Frame of scenes perceived without a camera pose "
                         "(gravity frame from the support plane); two such views are registered"),
    "scene_history": Param(10, "Scenes kept by id", positive),
    "scene_priors_topic": Param("/spatialpin/scene_priors", "ScenePriors input"),
    "cloud_topic": Param("/spatialpin/scene_cloud", "Scene cloud input (for ZeroVLM views and "
                         "registration)"),
    "color_topic": Param("/camera/camera/color/image_raw", "Colour images (sent to VLM "
                         "backends); realsense-ros 4.x name, remapped in the simulator graphs"),
    "ask_service": Param("/spatialpin/ask", "AskSpatial service name"),
    "propose_service": Param("/spatialpin/propose_tasks", "ProposeTasks service name"),
    "proposer": Param("geometric", "Task proposer: geometric, openai or transformers (VLM "
                      "proposals are checked against the scene; geometric ones are the fallback)",
                      one_of("geometric", "openai", "transformers")),
    "max_tasks": Param(5, "Tasks proposed when a request asks for 0", positive),
    "object_finder": Param("openai", "VLM backend that lists the objects in the image for the "
                           "models perception backend (SpatialPIN's object-finding prompt): "
                           "openai or transformers", one_of("openai", "transformers")),
    "find_objects_service": Param("/spatialpin/find_objects", "Trigger: ask the VLM which "
                                  "objects the latest image shows, publish them on "
                                  "object_names_topic"),
    "object_names_topic": Param("/spatialpin/object_names", "The VLM's object list "
                                "(std_msgs/String, latched)"),
}


#: Executor threads of the node: questions are answered this many at a time.
ASK_THREADS = 8


def boundary(what: str, service: bool = False):
    """Wrap a subscription (or, with ``service``, a service) callback so that no exception ends
    the node: the error is logged (bounded), and a service replies success=False with the reason.
    (The wrappers keep the callbacks' arity: rclpy passes a subscription with two parameters its
    MessageInfo too.)"""
    def failed(node, e: Exception) -> str:
        why = f"{what} failed: {type(e).__name__}: {conv.bounded(e, 400)}"
        node.get_logger().error(why)
        return why

    def wrap(fn):
        if service:
            @functools.wraps(fn)
            def guarded_service(self, req, res):
                try:
                    return fn(self, req, res)
                except Exception as e:  # noqa: BLE001 - the boundary
                    res.success, res.message = False, failed(self, e)
                    return res
            return guarded_service

        @functools.wraps(fn)
        def guarded(self, msg):
            try:
                fn(self, msg)
            except Exception as e:  # noqa: BLE001 - the boundary
                failed(self, e)
        return guarded
    return wrap


class SceneRecord:
    """A scene with the colour image and cloud of the same stamp, when they arrived."""

    def __init__(self, scene, stamp):
        self.scene = scene
        self.stamp = stamp
        self.image: Optional[np.ndarray] = None
        self.cloud: Optional[tuple[np.ndarray, np.ndarray]] = None


class SpatialQANode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("spatial_qa", **kwargs)
        self.p = declare_params(self, PARAMS)
        p = self.p
        self.records: "OrderedDict[str, SceneRecord]" = OrderedDict()
        #: Scenes with a status other than ok (empty, with the reason), by id; never answered.
        self.unusable: "OrderedDict[str, Scene]" = OrderedDict()
        self._images: "OrderedDict[tuple, Image]" = OrderedDict()
        self._clouds: "OrderedDict[tuple, PointCloud2]" = OrderedDict()
        self._lock = threading.Lock()
        # VLM clients made on first use (a missing model or server never stops the node from
        # starting), once, whichever of the ASK_THREADS threads asks first.
        self.qa = SpatialQA(vlms=LazyVLMs(self._make_vlm), views=p.views, view_names=p.view_names,
                            max_tokens=int(p.max_tokens))
        self.requests = 0
        self.create_subscription(ScenePriors, p.scene_priors_topic, self._on_scene, LATCHED)
        self.create_subscription(PointCloud2, p.cloud_topic, self._on_cloud, 2)
        self.create_subscription(Image, p.color_topic, self._on_image, qos_profile_sensor_data)
        # Questions are queued (SERVICE_QOS: hundreds at once, not the default 10) and answered
        # by ASK_THREADS executor threads at once (a VLM answer waits on its server).
        self.create_service(AskSpatial, p.ask_service, self._on_ask, qos_profile=SERVICE_QOS,
                            callback_group=ReentrantCallbackGroup())
        self.create_service(ProposeTasks, p.propose_service, self._on_propose,
                            qos_profile=SERVICE_QOS,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.pub_names = self.create_publisher(String, p.object_names_topic, LATCHED)
        self.create_service(Trigger, p.find_objects_service, self._on_find_objects,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.add_on_set_parameters_callback(self._on_params_set)
        self.get_logger().info(f"answering on {p.ask_service} (default backend "
                               f"'{p.default_backend}')")

    def _make_vlm(self, name: str):
        """The VLM client ``name`` (openai or transformers) from the node's parameters."""
        from spatialpin_ros.vlm import VLMError, make_vlm
        p = self.p
        if name == "openai":
            return make_vlm("openai", base_url=p.openai_base_url, model=p.openai_model,
                            api_key_env=p.openai_api_key_env, timeout_s=p.openai_timeout_s)
        if not p.transformers_model:
            raise VLMError("the transformers backend has no model: set the transformers.model "
                           "parameter", reason="load")
        return make_vlm("transformers", model=p.transformers_model, device=p.transformers_device,
                        decode=p.transformers_decode,
                        encode_threads=int(p.transformers_encode_threads))

    def _on_params_set(self, params):
        """A change of openai.model or openai.timeout_s drops the openai client, so the next
        request makes one with the new values (the endpoint and key settings are read-only)."""
        from rcl_interfaces.msg import SetParametersResult
        if any(q.name.startswith("openai.") for q in params):
            self.qa.vlms.forget("openai")
        return SetParametersResult(successful=True)

    # -- inputs --------------------------------------------------------------------------------
    @staticmethod
    def _key(stamp) -> tuple:
        return (stamp.sec, stamp.nanosec)

    @boundary("a ScenePriors message")
    def _on_scene(self, msg: ScenePriors) -> None:
        scene = conv.scene_from_msg_or_log(msg, self.get_logger())
        if scene is None:
            return
        if scene.status is not PerceptionStatus.OK:
            with self._lock:
                put_newest(self.unusable, scene.scene_id, scene, self.p.scene_history)
                last = next(reversed(self.records), None)
            self.get_logger().warning(
                f"scene {conv.bounded(scene.scene_id)!r} is "
                f"{conv.bounded(conv.scene_status_text(scene), 400)}; answering about "
                + (f"the last good scene {last!r}" if last else "no scene until a good one comes"),
                throttle_duration_sec=5.0)
            return
        rec = SceneRecord(scene, self._key(msg.header.stamp))
        with self._lock:
            self.unusable.pop(scene.scene_id, None)
            img = self._images.get(rec.stamp)
            cl = self._clouds.get(rec.stamp)
            if img is not None:
                rec.image = self._decode_image(img)
            if cl is not None:
                rec.cloud = cloud_from_msg(cl)
            newest = next(reversed(self.records.values()), None)
            self.records[scene.scene_id] = rec
            older = (newest is not None and newest.scene.scene_id != scene.scene_id
                     and rec.stamp < newest.stamp and not self._clock_was_reset(newest.stamp))
            if older:
                # Time went backwards: keep the scene by id, in stamp order, never as the newest.
                ordered = sorted(self.records.items(), key=lambda kv: kv[1].stamp)
                self.records.clear()
                self.records.update(ordered)
            else:
                self.records.move_to_end(scene.scene_id)
            trim_oldest(self.records, self.p.scene_history)
        if older:
            dt = (newest.stamp[0] - rec.stamp[0]) + (newest.stamp[1] - rec.stamp[1]) * 1e-9
            self.get_logger().warning(
                f"scene {conv.bounded(scene.scene_id)!r} is stamped {dt:.3f} s before the newest "
                f"scene {conv.bounded(newest.scene.scene_id)!r} (time went backwards); kept by id "
                "but not used as the latest scene", throttle_duration_sec=5.0)

    def _clock_was_reset(self, newest_stamp: tuple) -> bool:
        """True when the newest scene is stamped more than 1 s after this node's clock now, i.e.
        the clock itself went back (a restarted simulator under use_sim_time): then a scene with
        an older stamp is the new present, not a late message."""
        now = self.get_clock().now().nanoseconds
        return now > 0 and newest_stamp[0] * 1_000_000_000 + newest_stamp[1] > now + 1_000_000_000

    def _decode_image(self, msg: Image) -> Optional[np.ndarray]:
        try:
            return conv.rgb_from_msg(msg)
        except SpatialPinError:
            return None

    @boundary("a colour image")
    def _on_image(self, msg: Image) -> None:
        with self._lock:
            key = self._key(msg.header.stamp)
            put_newest(self._images, key, msg, 5)
            for rec in self.records.values():
                if rec.stamp == key and rec.image is None:
                    rec.image = self._decode_image(msg)

    @boundary("a scene cloud")
    def _on_cloud(self, msg: PointCloud2) -> None:
        with self._lock:
            key = self._key(msg.header.stamp)
            put_newest(self._clouds, key, msg, 5)
            for rec in self.records.values():
                if rec.stamp == key and rec.cloud is None:
                    rec.cloud = cloud_from_msg(msg)

    # -- the service ---------------------------------------------------------------------------
    @boundary("a question", service=True)
    def _on_ask(self, req: AskSpatial.Request, res: AskSpatial.Response) -> AskSpatial.Response:
        self.requests += 1
        ans = self.answer(req.question, req.scene_id, req.reference_scene_id, req.backend)
        res.success, res.answer, res.value, res.unit = ans.success, ans.answer, ans.value, ans.unit
        res.object_ids = list(ans.object_ids)
        # Inputs echoed in the reply are bounded where they are quoted; the whole message and
        # explanation are capped too (a backend may quote a request field).
        res.explanation = conv.bounded(ans.explanation, 4000, one_line=False)
        res.message = conv.bounded(ans.message, 1000, one_line=False)
        if not ans.success:
            self.get_logger().warning(f"question refused: {conv.bounded(ans.message, 500)}")
        elif ans.message:
            self.get_logger().warning(conv.bounded(ans.message, 500))
        return res

    @boundary("finding objects", service=True)
    def _on_find_objects(self, req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        from spatialpin_ros.perception.models_detect import (OBJECT_FINDING_PROMPT,
                                                             parse_object_lines)
        with self._lock:
            image = next((r.image for r in reversed(self.records.values())
                          if r.image is not None), None)
            if image is None and self._images:
                image = self._decode_image(next(reversed(self._images.values())))
        if image is None:
            res.success, res.message = False, "no colour image yet"
            return res
        try:
            reply = self.qa.vlms[self.p.object_finder].generate(
                "", OBJECT_FINDING_PROMPT, [image], max_tokens=256)
        except SpatialPinError as e:
            res.success = False
            res.message = f"{self.p.object_finder} failed: {conv.bounded(e, 500)}"
            self.get_logger().warning(res.message)
            return res
        names = parse_object_lines(reply.text)
        if not names:
            res.success = False
            res.message = f"the {self.p.object_finder} reply lists no objects: {reply.text[:200]!r}"
            return res
        self.pub_names.publish(String(data=reply.text[:4000]))
        res.success, res.message = True, "objects: " + ", ".join(names)
        return res

    @boundary("a task proposal", service=True)
    def _on_propose(self, req: ProposeTasks.Request,
                    res: ProposeTasks.Response) -> ProposeTasks.Response:
        from spatialpin_ros.reasoning.tasks import GeometricProposer, VLMProposer
        with self._lock:
            rec, why = self._record(req.scene_id)
        if rec is None:
            res.success, res.message = False, why
            self.get_logger().warning(f"proposal refused: {why}")
            return res
        n = int(req.max_tasks) or int(self.p.max_tasks)
        instruction = req.instruction[:1000]
        message = ""
        if self.p.proposer == "geometric":
            tasks = GeometricProposer().propose(rec.scene, n, instruction)
        else:
            try:
                client = self.qa.vlms[self.p.proposer]
            except SpatialPinError as e:
                client, message = None, f"{self.p.proposer} proposer unavailable ({e}); "
            if client is None:
                tasks = GeometricProposer().propose(rec.scene, n, instruction)
                message += "proposals are geometric"
            else:
                prop = VLMProposer(client, self.p.proposer)
                tasks = prop.propose(rec.scene, n, instruction, rec.image)
                message = prop.last_message
        for t in tasks:
            t.scene_id = rec.scene.scene_id
        res.tasks = [conv.task_to_msg(t) for t in tasks]
        res.success = bool(tasks)
        res.message = conv.bounded(message if tasks else (message or "no feasible task in this "
                                                          "scene"), 1000, one_line=False)
        if message:
            self.get_logger().warning(conv.bounded(message, 500))
        return res

    def _record(self, scene_id: str, role: str = "scene") -> tuple[Optional[SceneRecord], str]:
        """The record of ``scene_id`` (the latest good one for ""), or None and why not: no
        scene yet, a scene perception could not use (its status and reason), an unknown id.
        Call with the lock held."""
        if not scene_id:
            if self.records:
                return next(reversed(self.records.values())), ""
            why = ("no scene yet: the perception node has published nothing on "
                   + self.p.scene_priors_topic)
            if self.unusable:
                bad = next(reversed(self.unusable.values()))
                why = (f"no scene yet: perception has published only scenes it could not use; "
                       f"the latest, {conv.bounded(bad.scene_id)!r}, is "
                       f"{conv.bounded(conv.scene_status_text(bad), 400)}")
            return None, why
        if scene_id in self.records:
            return self.records[scene_id], ""
        if scene_id in self.unusable:
            bad = self.unusable[scene_id]
            return None, (f"{role} {conv.bounded(scene_id)!r} has no objects to use: perception "
                          f"status {conv.bounded(conv.scene_status_text(bad), 400)}")
        known = ", ".join(conv.bounded(k, 60) for k in list(self.records)[-self.p.scene_history:])
        return None, f"unknown {role} id {conv.bounded(scene_id)!r}; known: {known}"

    def answer(self, question: str, scene_id: str = "", ref_id: str = "",
               backend: str = "") -> Answer:
        with self._lock:
            rec, why = self._record(scene_id)
            if rec is None:
                return Answer(False, message=why)
            ref = None
            if ref_id:
                ref, why = self._record(ref_id, "reference scene")
                if ref is None:
                    return Answer(False, message=why)
        motion = None
        if ref is not None and (rec.scene.frame_id != ref.scene.frame_id
                                or rec.scene.frame_id == self.p.plane_frame):
            if rec.cloud is None or ref.cloud is None:
                return Answer(False, message="the two scenes have no common frame and their "
                              "point clouds are missing, so they cannot be registered")
            try:
                T = register_scenes(ref.scene, ref.cloud[0], rec.scene, rec.cloud[0])
                motion = camera_motion(ref.scene, rec.scene, T)
            except SpatialPinError as e:
                return Answer(False, message=f"could not register the two views: {e}")
        return self.qa.ask(question, rec.scene, ref.scene if ref else None,
                           backend=backend or self.p.default_backend, image=rec.image,
                           cloud=rec.cloud, camera_motion=motion)


def main(args=None) -> int:
    return run_node(SpatialQANode, args, threads=ASK_THREADS)


if __name__ == "__main__":
    raise SystemExit(main())
