"""The ROS pieces a no-ROS venv lacks, each used only when the real package is not importable.

Every real ROS 2 install has tf2_ros, message_filters and cv_bridge, and then they are used.
The venv built from the package index has none of them; these small stand-ins keep the node
working there with the same wire behaviour: /tf carries tf2_msgs/TFMessage, images are read
and written with numpy, and keypoints pair with images by approximate stamp.
"""
from __future__ import annotations

from collections import deque

import numpy as np
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import Image

try:
    from tf2_ros import TransformBroadcaster
except ImportError:
    TransformBroadcaster = None

try:
    from message_filters import ApproximateTimeSynchronizer
except ImportError:
    ApproximateTimeSynchronizer = None

try:
    from cv_bridge import CvBridge
except ImportError:
    CvBridge = None


def _stamp_seconds(msg) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


class _TopicTransformBroadcaster:
    """tf2_ros.TransformBroadcaster's publishing half: TFMessage on /tf (QoS as tf2_ros uses)."""

    def __init__(self, node, qos: QoSProfile | int = 100):
        from tf2_msgs.msg import TFMessage

        self._message = TFMessage
        if isinstance(qos, int):
            qos = QoSProfile(depth=qos, durability=DurabilityPolicy.VOLATILE)
        self.pub_tf = node.create_publisher(TFMessage, "/tf", qos)  # tf2_ros's name

    def sendTransform(self, transform):  # noqa: N802 (tf2_ros's name)
        transforms = transform if isinstance(transform, (list, tuple)) else [transform]
        self.pub_tf.publish(self._message(transforms=list(transforms)))


class _Subscriber:
    """message_filters.Subscriber's part as a synchroniser input (registerCallback(cb, *args)),
    used with the real synchroniser too: a stamp rclpy.Time cannot hold (negative seconds,
    nanosec >= 1e9) goes to `on_invalid` instead, because the real ApproximateTimeSynchronizer
    raises on it inside the executor, which would end the node."""

    def __init__(self, node, msg_type, topic: str, qos_profile=10, on_invalid=None):
        self._callbacks = []
        self._on_invalid = on_invalid
        self.sub = node.create_subscription(msg_type, topic, self._on_message, qos_profile)

    def registerCallback(self, callback, *args):  # noqa: N802
        self._callbacks.append((callback, args))

    def _on_message(self, msg):
        stamp = msg.header.stamp
        if stamp.sec < 0 or stamp.nanosec >= 1_000_000_000:
            if self._on_invalid is not None:
                self._on_invalid(msg)
            return
        for callback, args in self._callbacks:
            callback(msg, *args)


class _ApproximateTimeSynchronizer:
    """message_filters.ApproximateTimeSynchronizer, simplified: emits a tuple (one message per
    input) whose stamps all lie within `slop` seconds of the first input's message, newest match
    first; older queued messages are dropped once a match past them is emitted."""

    def __init__(self, subscribers, queue_size: int, slop: float):
        self._queues = [deque(maxlen=queue_size) for _ in subscribers]
        self._slop = slop
        self._callbacks = []
        for i, sub in enumerate(subscribers):
            sub.registerCallback(lambda msg, i=i: self._add(i, msg))

    def registerCallback(self, callback):  # noqa: N802
        self._callbacks.append(callback)

    def _add(self, index: int, msg):
        self._queues[index].append(msg)
        for pivot in reversed(self._queues[0]):
            t = _stamp_seconds(pivot)
            match = [pivot]
            for queue in self._queues[1:]:
                best = min(queue, key=lambda m: abs(_stamp_seconds(m) - t), default=None)
                if best is None or abs(_stamp_seconds(best) - t) > self._slop:
                    break
                match.append(best)
            else:
                for queue, used in zip(self._queues, match):
                    while queue and _stamp_seconds(queue[0]) <= _stamp_seconds(used):
                        queue.popleft()
                for callback in self._callbacks:
                    callback(*match)
                return


# sensor_msgs/Image encodings the node reads, as (numpy dtype, channels).
_ENCODINGS = {
    "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1), "bgr8": (np.uint8, 3), "rgb8": (np.uint8, 3),
    "bgra8": (np.uint8, 4), "rgba8": (np.uint8, 4), "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1),
    "32FC1": (np.float32, 1),
}


def image_to_numpy(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> (H, W[, C]) array; ValueError with the reason for a malformed image."""
    if CvBridge is not None:
        return CvBridge().imgmsg_to_cv2(msg, desired_encoding="passthrough")
    if msg.encoding not in _ENCODINGS:
        raise ValueError(f"unsupported image encoding '{msg.encoding}'")
    dtype, channels = _ENCODINGS[msg.encoding]
    dtype = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.height == 0 or msg.width == 0 or msg.step < row_bytes or len(msg.data) < msg.step * msg.height:
        raise ValueError(f"image {msg.width}x{msg.height} step {msg.step} does not fit its {len(msg.data)} bytes")
    rows = np.frombuffer(bytes(msg.data), np.uint8, msg.step * msg.height).reshape(msg.height, msg.step)
    pixels = rows[:, :row_bytes].copy().view(dtype).astype(dtype.newbyteorder("="))
    return pixels.reshape(msg.height, msg.width, channels) if channels > 1 else pixels


def numpy_to_image(array: np.ndarray, encoding: str, header=None) -> Image:
    """(H, W[, C]) array -> sensor_msgs/Image."""
    if CvBridge is not None:
        msg = CvBridge().cv2_to_imgmsg(array, encoding=encoding)
    else:
        array = np.ascontiguousarray(array)
        msg = Image(height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=0,
                    step=array.strides[0], data=array.tobytes())
    if header is not None:
        msg.header = header
    return msg


def make_transform_broadcaster(node):
    return TransformBroadcaster(node) if TransformBroadcaster is not None else _TopicTransformBroadcaster(node)


def destroy_transform_broadcaster(node, broadcaster):
    """Destroy a broadcaster's /tf publisher: tf2_ros's TransformBroadcaster has no destroy of its
    own; its publisher is `pub_tf` there and here."""
    node.destroy_publisher(broadcaster.pub_tf)


def make_subscriber(node, msg_type, topic: str, qos_profile, on_invalid=None):
    """A synchroniser input; ours in every install (see _Subscriber: it screens stamps)."""
    return _Subscriber(node, msg_type, topic, qos_profile=qos_profile, on_invalid=on_invalid)


def make_synchronizer(subscribers, queue_size: int, slop: float):
    cls = ApproximateTimeSynchronizer if ApproximateTimeSynchronizer is not None else _ApproximateTimeSynchronizer
    return cls(subscribers, queue_size, slop)
