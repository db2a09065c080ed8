"""The PoseMoE lift node: 2D keypoints in; 3D skeletons, TF and RViz markers out.

A lifecycle node: configure loads the model, activate subscribes and starts publishing. With
`autostart` (the default) it walks itself to active, so a plain `ros2 run` works. The lifting
itself (layouts, tracks, model, root solve) is posemoe_ros.pipeline.lifter.Lifter, which knows no ROS.
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from functools import partial

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterValueException, ParameterException
from rclpy.lifecycle import Node, State, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray
from diagnostic_msgs.msg import DiagnosticArray

from posemoe_ros.geometry.stature import MAX_STATURE, MIN_STATURE, body_height_error
from posemoe_ros.msg import Skeleton2DArray, Skeleton3DArray
from posemoe_ros.pipeline.lifter import Lifter, LifterConfig, ModelLoadError
from posemoe_ros.ros import conversions, fallbacks, shutdown, yolo_input
from posemoe_ros.ros.conversions import InputError
from posemoe_ros.ros.diagnostics import INTERNAL_ERROR, NodeStats, diagnostic_array
from posemoe_ros.ros.latest_inputs import LatestInputs
from posemoe_ros.ros.overlay import draw_overlay


@dataclass(frozen=True)
class Param:
    default: object
    description: str
    range: tuple | None = None  # (min, max) for numbers
    choices: tuple | None = None  # allowed strings
    read_only: bool = False  # takes effect only on (re)configure
    constraints: str | None = None  # what is accepted, where a range or choices cannot say it


PARAMETERS = {
    "weights": Param("", "PoseMoE safetensors weights; empty = the default model shipped in the package",
                     read_only=True),
    "device": Param("auto", "Inference device: auto (CUDA when available), cpu or cuda",
                    choices=("auto", "cpu", "cuda")),
    "backend": Param("onnxruntime", "CPU inference engine: onnxruntime (the faster on CPU, docs/performance.md) or "
                     "torch; on CUDA the node always runs torch in fp16 (the onnxruntime here is the CPU build)",
                     choices=("onnxruntime", "torch")),
    "num_threads": Param(0, "CPU threads for inference; 0 = the backend's default (onnxruntime: one single-threaded "
                         "session per core, at most 2, each lifting a share of the people; torch: all cores)",
                         range=(0, 64)),
    "lookahead": Param(0, "Frames of delay traded for accuracy: 0 = causal (newest frame); k lifts the frame "
                       "k steps back and stamps it with that frame's stamp", range=(0, 242)),
    "min_confidence": Param(0.3, "Keypoints below this detector confidence are marked missing, not trusted",
                            range=(0.0, 1.0)),
    "body_height": Param(1.70, "Stature (m) every skeleton is scaled to before its root is placed: one camera cannot "
                         "tell a tall far person from a short near one, so the monocular root depth scales with "
                         "it (a 5 % height error is ~5 % of the distance). 0 = the model's own size (~1.6 m, "
                         "limbs pulled in); docs/results.md",
                         # no range: a FloatingPointRange cannot say "0, or 0.3-2.5" (body_height_error)
                         constraints=f"0 (the model's own size), or {MIN_STATURE:g} to {MAX_STATURE:g} m"),
    "track_timeout": Param(1.0, "Seconds without a detection after which a track is dropped", range=(0.05, 60.0)),
    "max_gap": Param(0.5, "A stamp gap longer than this (s) restarts a track's temporal window", range=(0.01, 60.0)),
    "match_distance": Param(0.5, "Greatest frame-to-frame keypoint distance, in person heights, for keeping an "
                            "assigned id when the input has none", range=(0.01, 10.0)),
    "max_people": Param(64, "Messages with more people are rejected (bounds latency and memory)",
                        range=(1, 10000)),
    "max_tracks": Param(256, "Most tracks kept at once; the stalest are evicted beyond it", range=(1, 100000)),
    "fx": Param(0.0, "Fallback focal length x (px) used while no CameraInfo arrived; 0 = wait for CameraInfo",
                range=(0.0, 1e5)),
    "fy": Param(0.0, "Fallback focal length y (px); 0 = same as fx", range=(0.0, 1e5)),
    "cx": Param(-1.0, "Fallback principal point x (px); negative = image centre", range=(-1.0, 1e5)),
    "cy": Param(-1.0, "Fallback principal point y (px); negative = image centre", range=(-1.0, 1e5)),
    "use_depth": Param(False, "Pair keypoints with the aligned depth image and take the root depth from it",
                       read_only=True),
    "publish_overlay": Param(False, "Pair keypoints with the image and publish it with the input keypoints and "
                             "the reprojected 3D skeletons drawn on it", read_only=True),
    "sync_slop": Param(0.015, "Greatest stamp difference (s) when pairing keypoints with image or depth",
                       range=(0.0, 1.0), read_only=True),
    "input_type": Param("skeleton2d", "What the keypoints arrive as: skeleton2d (posemoe_ros/Skeleton2DArray on "
                        "keypoints_2d) or yolo (yolo_ros's yolo_msgs/DetectionArray of a YOLO-pose model on detections; "
                        "the image size then comes from CameraInfo)", choices=("skeleton2d", "yolo"), read_only=True),
    "input_reliability": Param("best_effort", "QoS reliability of the inputs (must be compatible with the "
                               "publishers, or data is silently dropped)",
                               choices=("best_effort", "reliable"), read_only=True),
    "publish_tf": Param(True, "Broadcast body_<id> and per-joint TF frames"),
    "tf_prefix": Param("", "Prefix of every TF frame this node broadcasts"),
    "publish_markers": Param(True, "Publish RViz markers on skeleton_markers"),
    "marker_lifetime": Param(0.5, "Seconds a marker stays in RViz without an update", range=(0.0, 60.0)),
    "diagnostics_period": Param(1.0, "Seconds between /diagnostics reports", range=(0.1, 60.0), read_only=True),
    "warn_period": Param(5.0, "Least seconds between two warnings of the same kind", range=(0.0, 3600.0)),
    "max_stamp_ahead": Param(60.0, "Inputs stamped more than this (s) ahead of the node's clock are rejected "
                             "(invalid_stamp): the next sane stamp would look like a jump back and reset every "
                             "track; 0 = no check", range=(0.0, 1e9)),
    "autostart": Param(True, "Configure and activate at start-up", read_only=True),
}

# Parameters the Lifter reads; changing one at run time rebuilds its config (no reload).
_LIFTER_PARAMETERS = ("lookahead", "min_confidence", "body_height", "track_timeout", "max_gap", "match_distance", "max_tracks",
                      "device", "num_threads", "backend")


def _descriptor(name: str, p: Param) -> ParameterDescriptor:
    d = ParameterDescriptor(name=name, description=p.description, read_only=p.read_only)
    if p.choices:
        d.additional_constraints = "one of: " + ", ".join(p.choices)
    if p.constraints:
        d.additional_constraints = p.constraints
    if p.range and isinstance(p.default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]), to_value=float(p.range[1]))]
    elif p.range:
        d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
    return d


def check_parameter(name: str, value) -> str | None:
    """The reason a parameter value is refused, or None."""
    p = PARAMETERS.get(name)
    if p is None:
        return None
    if p.choices and value not in p.choices:
        return f"{name} must be one of {', '.join(p.choices)}, not '{value}'"
    if p.range and not (p.range[0] <= value <= p.range[1]):
        return f"{name}={value} outside [{p.range[0]}, {p.range[1]}]"
    if name == "body_height":  # the Lifter's own rule, checked here so start-up fails with one line
        return body_height_error(value)
    return None


class LiftNode(Node):
    def __init__(self, **kwargs):
        super().__init__("posemoe_lift", **kwargs)
        for name, p in PARAMETERS.items():
            self.declare_parameter(name, p.default, _descriptor(name, p))
        for name in PARAMETERS:  # overrides from the command line or a YAML file skip the callback
            reason = check_parameter(name, self.p(name))
            if reason:
                raise InvalidParameterValueException(name, self.p(name), reason)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.stats = NodeStats()
        self.lifter: Lifter | None = None
        self._input_subscriptions = []
        self._camera_info_topic = "camera_info"  # resolved (namespace, remaps) at activation
        self._camera = None  # (K, dist) from CameraInfo
        self._camera_size = None  # its (width, height): the image size of yolo input, which has none
        self._camera_logged = False  # the first CameraInfo of an activation is logged
        self._camera_error = None
        self._configure_error = "configure failed"
        self._last_warning: dict[str, float] = {}
        self._last_lifted_ns: int | None = None  # to count stamps that go back (tracks reset)
        # Lifting runs on its own thread, fed the newest message per camera (docs/performance.md);
        # the lock keeps parameter updates and diagnostics from racing a lift.
        self._inbox: LatestInputs | None = None
        self._lift_thread: threading.Thread | None = None
        self._lifter_lock = threading.Lock()
        self.tf_broadcaster = None
        self.pub_skeletons = self.pub_markers = self.pub_overlay = self.pub_diagnostics = None
        self.diagnostics_timer = None
        if self.get_parameter("autostart").value:
            self.trigger_configure()
            if self.lifter is None:
                raise ModelLoadError(self._configure_error)
            self.trigger_activate()

    # ---- parameters -------------------------------------------------------------------------
    def p(self, name: str):
        return self.get_parameter(name).value

    def _on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            reason = check_parameter(param.name, param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if self.lifter is not None and any(p.name in _LIFTER_PARAMETERS for p in params):
            values = {p.name: p.value for p in params}
            try:
                with self._lifter_lock:
                    self.lifter.update_config(self._lifter_config(**values))
            except Exception as exc:  # noqa: BLE001 - ValueError/RuntimeError: settings it cannot meet
                return SetParametersResult(successful=False, reason=str(exc) or repr(exc))
        return SetParametersResult(successful=True)

    def _lifter_config(self, **overrides) -> LifterConfig:
        value = lambda name: overrides.get(name, self.p(name))  # noqa: E731
        return LifterConfig(**{name: value(name) for name in _LIFTER_PARAMETERS})

    # ---- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        if self.p("input_type") == "yolo":  # before the model: a missing package fails at once, in one line
            try:
                self._keypoints_input = (yolo_input.detection_array_type(), "detections")
            except ImportError as exc:
                self._configure_error = str(exc)
                self.get_logger().fatal(self._configure_error)
                return TransitionCallbackReturn.FAILURE
        else:
            self._keypoints_input = (Skeleton2DArray, "keypoints_2d")
        try:
            self.lifter = Lifter.from_weights(self.p("weights") or None, self._lifter_config())
        except Exception as exc:  # noqa: BLE001 - ModelLoadError, or anything else: one line, no traceback wall
            self._configure_error = str(exc) if isinstance(exc, ModelLoadError) else f"cannot load the model: {exc!r}"
            self.get_logger().fatal(self._configure_error)
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"loaded {self.lifter.model_description} on {self.lifter.device} "
                               f"({self.lifter.backend})")
        self.pub_skeletons = self.create_lifecycle_publisher(Skeleton3DArray, "skeletons_3d", 10)
        self.pub_markers = self.create_lifecycle_publisher(MarkerArray, "skeleton_markers", 10)
        if self.p("publish_overlay"):  # advertised only when something will come out of it
            self.pub_overlay = self.create_lifecycle_publisher(Image, "overlay", qos_profile_sensor_data)
        self.pub_diagnostics = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        if self.tf_broadcaster is None:  # once per node: it has no destroy, and cleanup must not leak it
            self.tf_broadcaster = fallbacks.make_transform_broadcaster(self)
        self.diagnostics_timer = self.create_timer(self.p("diagnostics_period"), self._publish_diagnostics)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        qos = QoSProfile(depth=5, history=qos_profile_sensor_data.history, durability=qos_profile_sensor_data.durability,
                         reliability=ReliabilityPolicy.BEST_EFFORT if self.p("input_reliability") == "best_effort"
                         else ReliabilityPolicy.RELIABLE)
        self._input_subscriptions.append(self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos))
        paired = [(Image, "depth")] if self.p("use_depth") else []
        paired += [(Image, "image")] if self.p("publish_overlay") else []
        if paired:  # keypoints + depth and/or image, matched by stamp
            # A stamp the synchroniser cannot hold is screened out before it: keypoints go on to
            # _queue_input, which counts them as invalid_stamp; images are counted here.
            subs = [fallbacks.make_subscriber(self, *self._keypoints_input, qos,
                                              on_invalid=lambda msg: self._queue_input(msg, None, None))]
            subs += [fallbacks.make_subscriber(self, t, topic, qos, on_invalid=self._on_image_invalid_stamp)
                     for t, topic in paired]
            self._sync = fallbacks.make_synchronizer(subs, queue_size=10, slop=self.p("sync_slop"))
            # which paired topic is which is fixed until the next activate: not looked up per frame
            self._sync.registerCallback(partial(self._on_keypoints_paired, tuple(topic for _, topic in paired)))
            self._input_subscriptions += [s.sub for s in subs]
        else:
            self._input_subscriptions.append(
                self.create_subscription(*self._keypoints_input, self._on_keypoints, qos))
        self._inbox = LatestInputs()
        self._lift_thread = threading.Thread(target=self._lift_loop, args=(self._inbox,), name="lift", daemon=True)
        self._lift_thread.start()
        self._camera_info_topic = self._input_subscriptions[0].topic_name
        self._camera_logged = False
        self._log_topics()
        return super().on_activate(state)

    def _log_topics(self):
        """One line at activation: the resolved topics (namespace and remaps applied), model, device."""
        outputs = [p.topic_name for p in (self.pub_skeletons, self.pub_markers, self.pub_overlay) if p is not None]
        outputs += ["/tf"] if self.p("publish_tf") else []
        outputs.append(self.pub_diagnostics.topic_name)
        self.get_logger().info(
            f"lifting {', '.join(s.topic_name for s in self._input_subscriptions)} -> {', '.join(outputs)} "
            f"with {self.lifter.model_description} on {self.lifter.device} ({self.lifter.backend})")

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_inputs()
        return super().on_deactivate(state)  # disables the publishers

    def _stop_inputs(self):
        """Unsubscribe, then stop the lifting thread after its current frame: nothing comes in, and
        nothing goes out once this returns."""
        for sub in self._input_subscriptions:
            self.destroy_subscription(sub)
        self._input_subscriptions.clear()
        self._stop_lifting()

    def _stop_lifting(self):
        """Stop the lifting thread after its current frame; pending inputs count as dropped."""
        if getattr(self, "_lift_thread", None) is None:  # also a node whose __init__ failed early
            return
        self.stats.count_dropped(self._inbox.clear())
        self._inbox.close()
        self._lift_thread.join(timeout=10.0)
        self._lift_thread = None

    def destroy_node(self):
        # as rclcpp's LifecycleNode: a node destroyed before it is finalized shuts down first, so
        # the lifting thread stops before the publishers it uses go
        constructed = hasattr(self, "diagnostics_timer")  # not a node whose __init__ failed early
        if constructed and self.context.ok() and self._state_machine.current_state[1] != "finalized":
            self.trigger_shutdown()
        self._stop_lifting()
        super().destroy_node()
        # rclpy's lifecycle state machine holds the rcl node, which then lives on until garbage
        # collection: a node re-created with this name in the same process (a component
        # container, a test) would keep logging into the old node's /rosout publisher, lost.
        self._state_machine.destroy_when_not_in_use()

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release_outputs()
        return TransitionCallbackReturn.SUCCESS

    def _release_outputs(self):
        """Destroy what configure created (each only if it exists: shutdown comes from any state)."""
        if self.diagnostics_timer is not None:
            self.destroy_timer(self.diagnostics_timer)
            self.diagnostics_timer = None
        for name in ("pub_skeletons", "pub_markers", "pub_overlay", "pub_diagnostics"):
            if getattr(self, name) is not None:
                self.destroy_lifecycle_publisher(getattr(self, name))
                setattr(self, name, None)
        self.lifter = None

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        """From unconfigured, inactive or active: release everything. rclpy's default releases
        nothing, so a node shut down while active went on lifting and publishing, finalized."""
        self._stop_inputs()
        self._release_outputs()
        if self.tf_broadcaster is not None:
            fallbacks.destroy_transform_broadcaster(self, self.tf_broadcaster)
            self.tf_broadcaster = None
        return TransitionCallbackReturn.SUCCESS

    # ---- callbacks ---------------------------------------------------------------------------
    def _warn(self, reason: str, text: str):
        """One warning per reason per warn_period: a bad publisher must not flood the log."""
        now = time.monotonic()
        if now - self._last_warning.get(reason, -1e9) >= self.p("warn_period"):
            self._last_warning[reason] = now
            self.get_logger().warning(f"{text} [{reason}; counted in /diagnostics]")

    def _internal_error(self, where: str):
        """The last line of defence: a bug must not take the node down. Counted, logged with its
        traceback at most once per warn_period."""
        self.stats.reject(INTERNAL_ERROR)
        now = time.monotonic()
        if now - self._last_warning.get(INTERNAL_ERROR, -1e9) >= self.p("warn_period"):
            self._last_warning[INTERNAL_ERROR] = now
            self.get_logger().error(f"internal error in {where} [{INTERNAL_ERROR}; counted in /diagnostics]:\n"
                                    + traceback.format_exc())

    def _on_camera_info(self, msg: CameraInfo):
        try:
            self._camera = conversions.intrinsics_from_camera_info(msg)
            self._camera_size = (msg.width, msg.height) if msg.width and msg.height else None
            self._camera_error = None
            if not self._camera_logged:
                self._camera_logged = True
                self.get_logger().info(f"first CameraInfo on {self._camera_info_topic}: {msg.width}x{msg.height}, "
                                       f"fx {msg.k[0]:.1f}, fy {msg.k[4]:.1f}, {msg.distortion_model or 'no'} "
                                       "distortion")
        except InputError as exc:  # the last good CameraInfo, if any, stays in use
            self.stats.reject(exc.reason)
            self._camera_error = str(exc)
            self._warn(exc.reason, str(exc))
        except Exception:  # noqa: BLE001
            self._internal_error("camera_info callback")

    def _on_keypoints(self, msg: Skeleton2DArray):
        self._queue_input(msg, None, None)

    def _on_keypoints_paired(self, topics: tuple[str, ...], msg: Skeleton2DArray, *images):
        paired = dict(zip(topics, images))
        self._queue_input(msg, paired.get("depth"), paired.get("image"))

    def _on_image_invalid_stamp(self, msg: Image):
        self.stats.reject("invalid_stamp")
        self._warn("invalid_stamp", f"image or depth with an invalid stamp ignored: {msg.header.stamp}")

    def _queue_input(self, msg: Skeleton2DArray, depth, image):
        """Executor thread: validate the message (_validate), then hand it to the lifting thread,
        replacing (and counting as dropped) a message from the same camera that it has not started
        on yet. Nothing raises out of here: the catch-all is the last line of defence only."""
        received = time.perf_counter()
        self.stats.count_input()
        try:
            item = self._validate(msg, depth, image)
        except InputError as exc:
            self.stats.reject(exc.reason, exc.count)
            self._warn(exc.reason, f"dropped keypoints: {exc}")
            return
        except Exception:  # noqa: BLE001
            self._internal_error("keypoints callback")
            return
        if item is not None and self._inbox.put(msg.header.frame_id, item + (received,)):
            self.stats.count_dropped()

    def _validate(self, msg: Skeleton2DArray, depth, image):
        """Executor thread, before the inbox: every rejection is counted (none is lost to a newer
        message) and junk never displaces a valid message waiting there. InputError for a message
        that cannot be lifted; a bad depth or image only costs itself. -> inbox item, or None."""
        stamp = conversions.checked_stamp_ns(msg.header.stamp, self.get_clock().now().nanoseconds,
                                             self.p("max_stamp_ahead"))
        dropped = Counter()
        sized = isinstance(msg, Skeleton2DArray)
        if not sized:  # yolo_msgs/DetectionArray: converted, then the same path
            msg = yolo_input.skeletons_from_detections(msg, self._camera_size, self.p("max_people"), dropped)
        ids, uv, conf = conversions.keypoints_from_msg(msg, self.p("max_people"), dropped, check_size=sized)
        for name, other, encodings, size in (("bad_depth_image", depth, conversions.DEPTH_ENCODINGS,
                                              _image_size(msg)),
                                             ("bad_image", image, conversions.IMAGE_ENCODINGS, None)):
            error = conversions.image_error(other, encodings, size) if other is not None else None
            if error:
                dropped[name] += 1
                self._warn(name, f"{name.replace('_', ' ')} ignored, lifting without it: {error}")
        depth = None if dropped["bad_depth_image"] else depth
        image = None if dropped["bad_image"] else image
        for reason, count in dropped.items():
            self.stats.reject(reason, count)
            if reason == "wrong_keypoint_count":
                self._warn(reason, f"{count} person(s) with a keypoint count that does not fit "
                                   f"'{msg.layout}' left out")
            elif reason in yolo_input.REASONS:
                self._warn(reason, f"{count} {yolo_input.REASONS[reason]}")
        camera = self._intrinsics(msg)
        if camera is None:
            return None
        return (msg, (stamp, ids, uv, conf, camera), depth, image)

    def _lift_loop(self, inbox: LatestInputs):
        """Lifting thread: newest pending message per camera, one at a time, until the inbox closes."""
        while True:
            item = inbox.take(timeout=1.0)
            if item is None:
                if inbox.closed:
                    return
                continue
            with self._lifter_lock:
                try:
                    self._lift(*item)
                except Exception:  # noqa: BLE001 - a bug must not end lifting for the node's lifetime
                    if not self.context.ok():  # the context was shut down under a running node: no
                        return                 # error, and no log (it could not reach /rosout)
                    self._internal_error("lifting")

    def _lift(self, msg: Skeleton2DArray, parsed, depth, image, received: float):
        """Lifting thread: one validated message (see _validate) through the lifter, then publish."""
        stamp, ids, uv, conf, camera = parsed
        depth_m = None
        if depth is not None:
            try:
                depth_m = conversions.depth_from_msg(depth, _image_size(msg))
            except InputError as exc:  # well-formed but undecodable after all: lift without it
                self.stats.reject(exc.reason)
                self._warn(exc.reason, f"depth image ignored: {exc}")
        if self._last_lifted_ns is not None and stamp < self._last_lifted_ns:
            self.stats.count_time_reset()
            self._warn("time_reset", f"stamp went back {(self._last_lifted_ns - stamp) * 1e-9:.3f} s (a looping "
                                     "bag or a restarted clock?): every track restarts")
        self._last_lifted_ns = stamp
        frame = self.lifter.process(stamp, msg.layout, ids, uv, conf, *camera, depth=depth_m)
        for reason, count in frame.warnings.items():
            self.stats.reject(reason, count)
            self._warn(reason, f"{count} keypoint(s) or people ignored in one message: {reason}")
        if frame.people is None:  # every track still filling its lookahead
            return
        header = Header(stamp=conversions.stamp_msg(frame.stamp_ns), frame_id=msg.header.frame_id)
        latency = time.perf_counter() - received
        self.pub_skeletons.publish(conversions.skeleton_array_msg(header, frame.people, latency, frame.lookahead))
        if self.p("publish_tf") and frame.people:
            self.tf_broadcaster.sendTransform(conversions.transforms(header, frame.people, self.p("tf_prefix")))
        if self.p("publish_markers"):
            self.pub_markers.publish(conversions.marker_array(header, frame.people, self.p("marker_lifetime")))
        if image is not None:
            self.pub_overlay.publish(draw_overlay(image, frame, camera[0]))
        self.stats.count_output(latency)

    def _intrinsics(self, msg: Skeleton2DArray):
        """CameraInfo's (K, dist); else the fallback parameters; else None (wait, warned)."""
        if self._camera is not None:
            return self._camera
        if self.p("fx") > 0 and (msg.width or min(self.p("cx"), self.p("cy")) >= 0):  # centre needs a size
            return conversions.fallback_intrinsics(self.p("fx"), self.p("fy"), self.p("cx"), self.p("cy"),
                                                   msg.width, msg.height)
        self.stats.reject("no_camera_info")
        self._warn("no_camera_info", f"no CameraInfo received yet on {self._camera_info_topic} and no fx parameter: "
                   "waiting" if msg.width else f"no CameraInfo received yet on {self._camera_info_topic}, and yolo "
                   "input has no image size: waiting (or set fx, cx and cy)")
        return None

    def _publish_diagnostics(self):
        if self.lifter is None:
            return
        waiting = "camera_info" if self._camera is None and self.p("fx") <= 0 else None
        with self._lifter_lock:  # the lifter's tracks change under the lifting thread
            diagnostics = diagnostic_array(
                self.get_clock().now().to_msg(), f"{self.get_name()}: lifting", self.get_fully_qualified_name(),
                self.stats, people_tracked=self.lifter.num_tracks,
                device=f"{self.lifter.device} ({self.lifter.backend})", model=self.lifter.model_description,
                camera_error=self._camera_error, waiting_for=waiting)
        self.pub_diagnostics.publish(diagnostics)


def _image_size(msg: Skeleton2DArray) -> tuple[int, int] | None:
    """The keypoints' image size, which depth must match; None when unknown (yolo before CameraInfo)."""
    return (msg.width, msg.height) if msg.width else None


def main(args=None) -> int:
    shutdown.install()  # SIGINT/SIGTERM set a flag; rclpy's handlers would kill the context mid-lift
    shutdown.defer()  # from here a signal ends the spin below, and the node is torn down in order
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = LiftNode()
    except ModelLoadError:
        # on_configure already logged the one FATAL line that says why
        rclpy.try_shutdown()
        return 1
    except ParameterException as exc:  # an override out of range, of the wrong type or choice
        rclpy.logging.get_logger("posemoe_lift").fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 1
    shutdown.spin_node(node)  # in order: the node (its lifting thread, then its entities), then the context
    return 0


if __name__ == "__main__":
    sys.exit(main())
