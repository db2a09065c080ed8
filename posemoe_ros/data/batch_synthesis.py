"""Training sequences synthesised a whole batch at once (vectorised numpy), and whole-clip evaluation.

The recipe of `windows.LiftingWindows` (docs/data.md: bone-length augmentation, a virtual camera that
sees every joint, detector keypoint offsets, projection, 2D detector noise, normalisation), written
over a batch instead of one Python call per window, plus the left/right flip (training used to do it
on the tensors) and the node's per-frame canonical view:

    sampler = SequenceSampler(clips, length=27, seed=0)
    batch = sampler.sample(64)      # dict of float32 numpy arrays
      "input"      (B,L,17,3) (x_n, y_n, conf), normalised coordinates; missing joints conf 0 and xy 0
      "target"     (B,L,17,3) root-relative joints (pelvis 0) in the (canonical) camera frame, metres
      "root"       (B,L,3)    pelvis in the camera frame before the canonical rotation, metres
      "K"          (B,3,3)    intrinsics (of the mirrored image for flipped sequences: cx -> w - cx)
      "image_size" (B,2)      (w, h)
      "R"          (B,L,3,3)  per-frame canonical rotation (identity without canonical_view):
                              target = R (joints - pelvis), and R root is the pelvis in the turned view

Inside, arrays are component-major, (3, 17, B, L) = (x/y/z, joint, sequence, frame): every step is
then an elementwise operation on contiguous (17, B, L) blocks, and sums or extremes over joints run
over the outermost axis, which numpy does at elementwise speed (reducing a short innermost axis of a
(B,L,17,3) array is about 50 times slower per element). Only the result is transposed to (B,L,17,3).

A flipped sequence is the mirrored scene: input and target through the equivalent of
`skeleton.flip_pose` and the root's x negated, so target + root still projects onto the input.
"""
import numpy as np
from scipy.signal import lfilter

from posemoe_ros.data.bone_length import BoneConfig, sample_lengths
from posemoe_ros.data.detector_noise import JOINT_JITTER, NoiseConfig
from posemoe_ros.data.virtual_camera import CameraConfig
from posemoe_ros.geometry.stature import LEGS, bone_lengths, standing_height
from posemoe_ros.skeleton import FLIP_PERMUTATION, JOINT_INDEX as J, NUM_JOINTS, PARENTS

_PARENT = [max(p, 0) for p in PARENTS]


def _norm(v):
    return np.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])


def _unit(v):
    return v / np.maximum(_norm(v), 1e-9)


def _cross(a, b):
    return np.stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _rotate(R, p, t=None):
    """R (B,3,3) [t (B,3)] applied to points p (3, ..., B, L): R p (+ t)."""
    out = np.empty_like(p)
    for i in range(3):
        out[i] = R[:, i, 0, None] * p[0] + R[:, i, 1, None] * p[1] + R[:, i, 2, None] * p[2]
        if t is not None:
            out[i] += t[:, i, None]
    return out


def augment_bones(P, reference, rng, config: BoneConfig):
    """bone_length.augment_bone_lengths per sequence: P (3,17,B,L) world, reference (B,17) -> (P', lengths)."""
    lengths = sample_lengths(reference, rng, config)                             # (B,17)
    leg = lambda L: np.mean([L[:, a] + L[:, k] for a, k, _ in LEGS], axis=0)
    s = (leg(lengths) / np.maximum(leg(reference), 1e-6))[:, None].astype(P.dtype)  # (B,1)
    bones = P - P[:, _PARENT]
    bones *= (lengths.T[:, :, None] / np.maximum(_norm(bones), 1e-9)).astype(P.dtype)  # same directions
    out = np.empty_like(P)
    out[:, 0] = P[:, 0]
    for c in range(1, NUM_JOINTS):                     # PARENTS is topologically sorted
        out[:, c] = out[:, PARENTS[c]] + bones[:, c]
    root = P[:, 0]                                     # (3,B,L)
    start = root[..., :1] * np.array([1.0, 0.0, 1.0], P.dtype)[:, None, None]  # first pelvis on the floor
    out += (start + (root - start) * s - root)[:, None]  # pelvis path scaled with the legs
    return out, lengths


def _look_rotations(yaw, pitch, roll):
    """virtual_camera.look_rotation for arrays of angles (n,): (n,3,3)."""
    f = np.stack([np.cos(pitch) * np.sin(yaw), np.sin(pitch), np.cos(pitch) * np.cos(yaw)], -1)
    right = np.cross(f, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    R = np.stack([right, np.cross(f, right), f], -2)
    c, s, z, o = np.cos(roll), np.sin(roll), np.zeros_like(roll), np.ones_like(roll)
    rolled = np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)
    return rolled @ R


def sample_cameras(P, rng, config: CameraConfig):
    """virtual_camera.sample_camera for every sequence of P (3,17,B,L): (K (B,3,3), R (B,3,3), t (B,3), size (B,2)).

    All rows draw at once; rows whose camera fails (a joint nearer than min_depth, or the person fitting
    only below the focal range) are redrawn, only those, up to max_tries; at the last try a camera that
    merely needs a lower focal length is kept. Rows that never got every joint in front of the camera
    start again from further away, as sample_camera does."""
    c = config
    B = P.shape[2]
    centre = P[:, 0].mean(-1, dtype=np.float64)                                # (3,B) mean pelvis
    target_y = 0.5 * (P[1].min(0).min(-1) + P[1].max(0).max(-1)).astype(np.float64)
    sizes = np.asarray(c.image_sizes, dtype=np.float64)
    K, R, t, size = np.zeros((B, 3, 3)), np.zeros((B, 3, 3)), np.zeros((B, 3)), np.zeros((B, 2))
    todo = np.arange(B)
    for attempt in range(c.max_tries):
        n = len(todo)
        wh = sizes[rng.integers(len(sizes), size=n)]
        w, h = wh[:, 0], wh[:, 1]
        fx = rng.uniform(*c.focal_range, n)
        cx = w / 2 + rng.uniform(-1, 1, n) * c.principal_jitter * w
        cy = h / 2 + rng.uniform(-1, 1, n) * c.principal_jitter * h
        around = rng.uniform(0, 2 * np.pi, n)                                  # where the camera stands
        dist = rng.uniform(*c.distance_range, n)
        position = centre[:, todo].T + dist[:, None] * np.stack([np.sin(around), np.zeros(n), np.cos(around)], -1)
        position[:, 1] = rng.uniform(*c.height_range, n)
        jitter = np.radians(c.aim_jitter_deg) * rng.uniform(-1, 1, (n, 2))
        yaw = around + np.pi + jitter[:, 0]                                    # look back at the person
        pitch = np.arctan2(target_y[todo] - position[:, 1], dist) + jitter[:, 1]
        pitch = np.clip(pitch, -np.radians(c.max_pitch_deg), np.radians(c.max_pitch_deg))
        roll = np.radians(c.max_roll_deg) * rng.uniform(-1, 1, n)
        rot = _look_rotations(yaw, pitch, roll)
        trans = -np.einsum("nij,nj->ni", rot, position)
        cam = _rotate(rot.astype(P.dtype), P if n == B else P[:, :, todo], trans.astype(P.dtype))
        depth = np.maximum(cam[2], 1e-9)
        xy = np.stack([cam[0] / depth, cam[1] / depth])                        # (2,17,n,L)
        top, bottom = xy.max(1).max(-1).T, xy.min(1).min(-1).T                  # (n,2) extreme rays bind the fit
        lo = np.stack([c.margin * w - cx, c.margin * h - cy], -1)              # allowed u - cx, v - cy
        hi = np.stack([(1 - c.margin) * w - cx, (1 - c.margin) * h - cy], -1)
        fit = np.minimum(np.divide(hi, top, out=np.full_like(top, np.inf), where=top > 0),
                         np.divide(lo, bottom, out=np.full_like(bottom, np.inf), where=bottom < 0)).min(-1)
        in_front = cam[2].min(0).min(-1) >= c.min_depth
        ok = in_front & ((fit >= c.focal_range[0]) | (attempt == c.max_tries - 1))
        rows, f = todo[ok], np.minimum(fx, fit)[ok]                             # lowered, never raised
        K[rows, 0, 0], K[rows, 1, 1], K[rows, 0, 2], K[rows, 1, 2], K[rows, 2, 2] = f, f, cx[ok], cy[ok], 1.0
        R[rows], t[rows], size[rows] = rot[ok], trans[ok], wh[ok]
        todo = todo[~ok]
        if not len(todo):
            break
    if len(todo):  # every try put a joint behind the camera (only for absurd trajectories): step back further
        far = CameraConfig(**{**c.__dict__, "distance_range": (c.distance_range[1], 2 * c.distance_range[1] + 10.0)})
        K[todo], R[todo], t[todo], size[todo] = sample_cameras(P[:, :, todo], rng, far)
    return K, R, t, size


def detector_keypoints(X, height, rng, config: NoiseConfig):
    """detector_noise.detector_keypoints per sequence: X (3,17,B,L) camera frame, height (B,) stature."""
    if not config.keypoint_offsets:
        return X
    c = config
    j = lambda name: X[:, J[name]]                                             # (3,B,L)
    draw = lambda r: (rng.uniform(*r, len(height)) * height)[:, None].astype(X.dtype)  # (B,1) per sequence
    up = _unit(j("thorax") - j("pelvis"))
    left = _unit(j("l_shoulder") - j("r_shoulder") + j("l_hip") - j("r_hip"))
    forward = _unit(_cross(left, up))
    left = _cross(up, forward)
    Y = X.copy()
    mid_hip = 0.5 * (j("l_hip") + j("r_hip"))
    half, raise_ = draw(c.hip_half_width), draw(c.hip_raise)
    Y[:, J["l_hip"]] = mid_hip + half * left + raise_ * up
    Y[:, J["r_hip"]] = mid_hip - half * left + raise_ * up
    Y[:, J["pelvis"]] = mid_hip + raise_ * up
    Y[:, J["thorax"]] = 0.5 * (j("l_shoulder") + j("r_shoulder"))
    Y[:, J["spine"]] = 0.5 * (Y[:, J["pelvis"]] + Y[:, J["thorax"]])
    Y[:, J["neck_nose"]] = j("neck_nose") + draw(c.nose_forward) * forward + draw(c.nose_up) * up
    Y[:, J["head"]] = j("head") - draw(c.head_drop) * _unit(j("head") - j("neck_nose"))
    return Y


def _ar1(shape, rho, rng):
    """Unit-variance stationary AR(1) noise of shape (..., B, L) along L, one coefficient per sequence (B,):
    detector_noise._ar1's filter, looping in Python over whichever of frames or sequences is fewer."""
    rho = np.asarray(rho, dtype=np.float64)
    gain = np.sqrt(1 - rho**2)
    eps = rng.standard_normal((shape[-1],) + tuple(shape[:-1]))               # (L, ..., B) time first
    if shape[-1] > shape[-2]:                                                  # long sequences: lfilter per row
        eps[0] /= gain
        out = np.stack([lfilter([gain[b]], [1.0, -rho[b]], eps[..., b], axis=0) for b in range(shape[-2])], -1)
    else:
        out = np.empty_like(eps)
        out[0] = eps[0]                                                        # stationary start
        for k in range(1, len(eps)):
            out[k] = rho * out[k - 1] + gain * eps[k]
    return np.moveaxis(out, 0, -1)


def corrupt_keypoints(uv, rng, config: NoiseConfig):
    """detector_noise.corrupt_keypoints per sequence: uv (2,17,B,L) pixels -> (noisy uv, conf (17,B,L))."""
    c = config
    B, L = uv.shape[2:]
    extent = uv.max(1) - uv.min(1)                                             # (2,B,L) keypoints' bounding box
    scale = np.maximum(extent.max(0), 1.0)                                     # (B,L) pixel height
    sigma = rng.uniform(*c.jitter, B)[None, :, None] * JOINT_JITTER[:, None, None]  # (17,B,1)
    noise = _ar1((2, NUM_JOINTS, B, L), rng.uniform(*c.temporal_corr, B), rng) * sigma
    outliers = rng.random((NUM_JOINTS, B, L)) < c.outlier_prob
    noise[:, outliers] += rng.standard_normal((2, outliers.sum())) * c.outlier_scale
    noisy = uv + (noise * scale).astype(uv.dtype)
    err = np.sqrt(noise[0] ** 2 + noise[1] ** 2)                               # (17,B,L) fraction of height
    conf = np.exp(-0.5 * (err / c.conf_sigma) ** 2) * rng.uniform(0.85, 1.0, (NUM_JOINTS, B, 1))
    conf = np.clip(conf + c.conf_noise * rng.standard_normal(conf.shape), 0.05, 1.0)
    rate = rng.uniform(*c.missing_prob, B)[None, :, None]
    j, b, t0 = np.nonzero(rng.random((NUM_JOINTS, B, L)) < rate)              # missing runs start here
    runs = rng.integers(c.missing_run[0], c.missing_run[1] + 1, len(t0))
    edges = np.zeros((NUM_JOINTS, B, L + 1), np.int32)                        # +1 at a start, -1 past the end
    np.add.at(edges, (j, b, t0), 1)
    np.add.at(edges, (j, b, np.minimum(t0 + runs, L)), -1)
    conf[np.cumsum(edges[..., :L], axis=-1) > 0] = 0.0
    return noisy, conf.astype(uv.dtype)


def _canonical_rotations(x, y, conf):
    """Per-frame optical_axis.rotation_to_axis of the confidence-weighted joint centre, x, y, conf (17,B,L)
    -> R (3,3,B,L) float64 (closed-form Rodrigues; the identity for a frame without seen joints)."""
    w = conf.astype(np.float64)
    total = np.maximum(w.sum(0), 1e-6)
    cx, cy = (x * w).sum(0) / total, (y * w).sum(0) / total                    # (B,L)
    n = np.sqrt(cx * cx + cy * cy + 1.0)
    rx, ry, rz = cx / n, cy / n, 1.0 / n                                       # unit ray through the centre
    s2 = rx * rx + ry * ry
    f = np.divide(1.0 - rz, s2, out=np.full_like(s2, 0.5), where=np.sqrt(s2) > 1e-12)
    # R = I + K + K^2 (1 - cos) / sin^2 with K the cross-product matrix of ray x z = (ry, -rx, 0)
    return np.array([[1 - rx * rx * f, -rx * ry * f, -rx],
                     [-rx * ry * f, 1 - ry * ry * f, -ry],
                     [rx, ry, 1 - s2 * f]])


def synthesize(world: np.ndarray, rng: np.random.Generator, augment: bool = True,
               camera: CameraConfig = CameraConfig(), noise: NoiseConfig = NoiseConfig(),
               bones: BoneConfig = BoneConfig(), flip_prob: float = 0.0, canonical_view: bool = True,
               reference: np.ndarray | None = None) -> dict:
    """World sequences (B,L,17,3) (Y up, metres) -> a batch dict (module docstring), all rows at once.

    reference: each sequence's bone lengths (B,17) (default: the median over its frames). Computes in
    world's dtype (float32 is plenty for metres and normalised coordinates)."""
    if reference is None:
        reference = np.median(bone_lengths(world.astype(np.float64)), axis=1)
    return _synthesize(np.ascontiguousarray(np.transpose(world, (3, 2, 0, 1))), reference, rng, augment, camera,
                       noise, bones, flip_prob, canonical_view)


def _synthesize(P, reference, rng, augment, camera, noise, bones, flip_prob, canonical_view) -> dict:
    """synthesize on component-major world joints P (3,17,B,L)."""
    if augment:                                                                # one body per sequence
        P, lengths = augment_bones(P, reference, rng, bones)
    else:
        lengths = reference
    K, R, t, size = sample_cameras(P, rng, camera)
    X = _rotate(R.astype(P.dtype), P, t.astype(P.dtype))                       # (3,17,B,L) optical frame
    kp = detector_keypoints(X, standing_height(lengths), rng, noise)           # where a detector sees them
    f, c = K[:, [0, 1], [0, 1]].T[:, None, :, None], K[:, [0, 1], [2, 2]].T[:, None, :, None]  # (2,1,B,1)
    uv, conf = corrupt_keypoints((kp[:2] / kp[2:] * f + c).astype(P.dtype), rng, noise)
    xy = np.where(conf > 0, (uv - c) / f, 0.0).astype(P.dtype)                     # affine: synthetic cameras are ideal
    target = X - X[:, :1]
    root = X[:, 0]                                                             # (3,B,L)
    B, L = P.shape[2:]
    if flip_prob > 0:  # the mirrored scene: x -> -x, left <-> right, principal point mirrored
        flip = rng.random(B) < flip_prob
        perm = np.asarray(FLIP_PERMUTATION)
        xy, conf, target = (np.where(flip[:, None], a[..., perm, :, :], a) for a in (xy, conf, target))
        sign = np.where(flip, -1.0, 1.0)[:, None].astype(P.dtype)
        xy[0] *= sign
        target[0] *= sign
        root = root.copy()
        root[0] *= sign
        K[:, 0, 2] = np.where(flip, size[:, 0] - K[:, 0, 2], K[:, 0, 2])
    if canonical_view:  # turn each frame's camera onto the person, as the node does (optical_axis.py)
        Rc = _canonical_rotations(xy[0], xy[1], conf)                         # (3,3,B,L)
        r32 = Rc.astype(P.dtype)
        rays = [r32[i, 0] * xy[0] + r32[i, 1] * xy[1] + r32[i, 2] for i in range(3)]
        z = np.maximum(rays[2], 1e-6)                                          # in view: < 90 deg off the centre
        xy = np.where(conf > 0, np.stack([rays[0] / z, rays[1] / z]), 0.0)
        target = np.stack([r32[i, 0] * target[0] + r32[i, 1] * target[1] + r32[i, 2] * target[2]
                           for i in range(3)])
        Rc = np.transpose(Rc, (2, 3, 0, 1))
    else:
        Rc = np.broadcast_to(np.eye(3), (B, L, 3, 3))
    out = lambda a: np.ascontiguousarray(np.transpose(a, (2, 3, 1, 0)), dtype=np.float32)  # (c,j,B,L) -> (B,L,j,c)
    return {"input": out(np.concatenate([xy, conf[None]])), "target": out(target),
            "root": np.ascontiguousarray(np.transpose(root, (1, 2, 0)), dtype=np.float32),
            "K": K.astype(np.float32), "image_size": size.astype(np.float32), "R": Rc.astype(np.float32)}


class SequenceSampler:
    """Random training sequences of `length` consecutive frames, synthesised a batch at a time.

    Clips are drawn with probability proportional to their number of frames, the first frame uniformly
    among those that keep the sequence inside the clip; a clip shorter than `length` is centred and
    edge-replicated (first / last frame repeated), as `windows.window_starts` does. Each sequence gets
    its own body (augment), camera, detector noise and flip (flip_prob). `seed` fixes the whole stream
    of batches (give each DataLoader worker or DDP rank its own). The bone-length reference of a
    sequence is its clip's median bone lengths (LiftingWindows takes the window's median: the same
    for rigid skeletons)."""

    def __init__(self, clips, length: int, seed: int = 0, augment: bool = True, camera: CameraConfig = CameraConfig(),
                 noise: NoiseConfig = NoiseConfig(), bones: BoneConfig = BoneConfig(), flip_prob: float = 0.5,
                 canonical_view: bool = True):
        clips = list(clips)
        if not clips:
            raise ValueError("SequenceSampler needs at least one clip")
        self.length, self.augment, self.flip_prob, self.canonical_view = length, augment, flip_prob, canonical_view
        self.camera, self.noise, self.bones = camera, noise, bones
        self.rng = np.random.default_rng(seed)
        self.frames = np.array([c.joints.shape[0] for c in clips], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.frames)[:-1]])
        self.weights = self.frames / self.frames.sum()
        # all frames component-major (3, 17, frames): a batch is one gather along the last axis
        self.joints = np.ascontiguousarray(np.concatenate([c.joints for c in clips]).astype(np.float32).T)
        self.reference = np.stack([np.median(bone_lengths(c.joints.astype(np.float64)), axis=0) for c in clips])

    def frame_indices(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(clip (B,), columns of self.joints (B,L)) for a batch of random sequences."""
        clip = self.rng.choice(len(self.frames), batch_size, p=self.weights)
        F, L = self.frames[clip], self.length
        start = np.where(F >= L, (self.rng.random(batch_size) * np.maximum(F - L + 1, 1)).astype(np.int64),
                         -((L - F) // 2))
        return clip, self.offsets[clip][:, None] + np.clip(start[:, None] + np.arange(L), 0, F[:, None] - 1)

    def sample(self, batch_size: int) -> dict:
        clip, columns = self.frame_indices(batch_size)
        return _synthesize(self.joints[:, :, columns], self.reference[clip], self.rng, self.augment, self.camera,
                           self.noise, self.bones, self.flip_prob, self.canonical_view)


def evaluation_sequences(clip, seed: int, camera: CameraConfig = CameraConfig(), noise: NoiseConfig = NoiseConfig(),
                         canonical_view: bool = True) -> dict:
    """One fixed, seeded camera and detector noise over a whole clip (no bone augmentation, no flip):
    the batch dict with B = 1 and L = the clip's frames. The same (clip, seed) always gives the same arrays."""
    return synthesize(clip.joints[None].astype(np.float64), np.random.default_rng(seed), augment=False,
                      camera=camera, noise=noise, flip_prob=0.0, canonical_view=canonical_view)
