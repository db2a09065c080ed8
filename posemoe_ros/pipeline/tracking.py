"""Who is who across frames, and each person's temporal window of model inputs.

TrackAssigner gives people without detector ids stable string ids ("0", "1", ...) by matching them
to the people seen recently (Hungarian assignment on a scale-normalised joint distance).
TrackManager keeps one fixed-size ring buffer of model-input frames per id, all in one pool array,
and for a streaming model each track's cached keys/values of its last W-1 frames (models/streaming.py)
in a second pool with the same slots: a new or restarted track starts with an empty cache.

Time rules (both classes): a frame whose stamp is older than the previous frame's (a bag looping,
a clock reset) resets everything, since nothing recorded "after" it can be its past; a track not
updated for `timeout` seconds is dropped; a track whose own gap exceeds `max_gap` restarts its window.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict

import numpy as np
from scipy.optimize import linear_sum_assignment

from posemoe_ros.skeleton import NUM_JOINTS

_UNMATCHABLE = 1e6  # cost of pairs with no confident joint in common


def person_scale(xy: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """Size of each person (P,): the larger side of the bounding box of the confident joints."""
    ok = conf > 0
    lo = np.where(ok[..., None], xy, np.inf).min(1)
    hi = np.where(ok[..., None], xy, -np.inf).max(1)
    extent = np.where(ok.any(1)[:, None], hi - lo, 0.0).max(-1)
    return np.maximum(extent, 1e-6)


def match_cost(xy_a, conf_a, xy_b, conf_b) -> np.ndarray:
    """(A,B) mean distance over joints confident in both, in units of the pair's mean scale."""
    both = (conf_a[:, None] > 0) & (conf_b[None] > 0)  # (A,B,17)
    dist = np.linalg.norm(xy_a[:, None] - xy_b[None], axis=-1)  # (A,B,17)
    n = both.sum(-1)
    mean = np.where(both, dist, 0.0).sum(-1) / np.maximum(n, 1)
    scale = 0.5 * (person_scale(xy_a, conf_a)[:, None] + person_scale(xy_b, conf_b)[None])
    return np.where(n > 0, mean / scale, _UNMATCHABLE)


class TrackAssigner:
    """Fills missing person ids by matching against the last sighting of recently seen ids."""

    def __init__(self, max_distance: float = 0.5, timeout: float = 1.0, max_tracks: int = 256):
        self.max_distance = max_distance  # gate, in person scales (bounding-box sides)
        self.timeout = timeout  # s a sighting stays matchable
        self.max_tracks = max_tracks
        self._seen: OrderedDict[str, tuple[np.ndarray, np.ndarray, float]] = OrderedDict()  # id -> xy, conf, stamp
        self._last_stamp = -np.inf
        self._counter = itertools.count()

    def reset(self):
        self._seen.clear()
        self._last_stamp = -np.inf

    def assign(self, xy17: np.ndarray, conf17: np.ndarray, stamp: float) -> list[str]:
        """Ids for people without detector ids. xy17 (P,17,2) (any unit), conf17 (P,17)."""
        ids, _ = self.fill_ids([""] * len(xy17), xy17, conf17, stamp)
        return ids

    def fill_ids(self, ids: list[str], xy17: np.ndarray, conf17: np.ndarray, stamp: float):
        """Keep the non-empty ids, fill the empty ones by matching.

        Returns (ids, duplicates): duplicates are the row indices whose non-empty id already
        appeared earlier in this frame (the first one is kept); the caller drops and counts them.
        """
        if stamp < self._last_stamp:
            self.reset()
        self._last_stamp = stamp
        self._expire(stamp)
        ids = list(ids)
        seen_now, duplicates = set(), []
        for n, i in enumerate(ids):
            if i:
                (duplicates.append(n) if i in seen_now else seen_now.add(i))
        empty = [n for n, i in enumerate(ids) if not i]
        candidates = [i for i in self._seen if i not in seen_now]
        if empty and candidates:
            cost = match_cost(xy17[empty], conf17[empty], np.stack([self._seen[i][0] for i in candidates]),
                              np.stack([self._seen[i][1] for i in candidates]))
            for r, c in zip(*linear_sum_assignment(cost)):
                if cost[r, c] <= self.max_distance:
                    ids[empty[r]] = candidates[c]
                    seen_now.add(candidates[c])
        for n in empty:
            if not ids[n]:
                ids[n] = self._new_id(seen_now)
                seen_now.add(ids[n])
        for n, i in enumerate(ids):
            if n not in duplicates:
                self._seen.pop(i, None)
                self._seen[i] = (np.array(xy17[n], np.float64), np.array(conf17[n], np.float64), stamp)
        while len(self._seen) > self.max_tracks:
            self._seen.popitem(last=False)  # least recently seen
        return ids, duplicates

    def _new_id(self, taken: set[str]) -> str:
        while True:  # skip ids a detector may have handed out itself
            i = str(next(self._counter))
            if i not in taken and i not in self._seen:
                return i

    def _expire(self, stamp: float):
        for i in [i for i, (_, _, t) in self._seen.items() if stamp - t > self.timeout]:
            del self._seen[i]


class TrackManager:
    """Per-id ring buffers of the last `num_frames` model-input frames, with expiry, resets and a cap.

    All tracks live in one preallocated pool (slots x T x 17 x 3, grown by doubling), so a frame's
    update writes every person's frame with one indexed assignment and `windows` gathers every
    requested window oldest-first with one fancy-indexed read: no per-person copies, no window
    rebuilt per frame. New tracks pad by repeating their first frame (edge padding).
    """

    def __init__(self, num_frames: int, timeout: float = 1.0, max_gap: float = 0.5, max_tracks: int = 256,
                 cache_shape: tuple | None = None):
        self.num_frames = num_frames
        self.timeout = timeout
        self.max_gap = max_gap
        self.max_tracks = max_tracks
        self._slots: OrderedDict[str, int] = OrderedDict()  # id -> pool slot, least recently updated first
        self._free: list[int] = []
        self._frames = np.zeros((0, num_frames, NUM_JOINTS, 3), np.float32)  # (slots,T,J,C) ring per slot
        self._stamps = np.zeros((0, num_frames), np.float64)
        self._head = np.zeros(0, np.int64)  # ring slot the next frame goes to; the oldest frame once full
        self._num_real = np.zeros(0, np.int64)  # frames seen since the track (re)started, at most T
        self._count = np.zeros(0, np.int64)  # the same, uncounted: frame n's keys/values sit in cache slot n % W-1
        # streaming cache (slots, A, J, W-1, 2C): a ring over axis 3, any order (ages say which is which)
        self._cache = np.zeros((0,) + tuple(cache_shape), np.float32) if cache_shape else None
        self._offsets = np.arange(num_frames)
        self._last_stamp = -np.inf

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, track_id: str) -> bool:
        return track_id in self._slots

    @property
    def ids(self) -> list[str]:
        return list(self._slots)

    def reset(self):
        self._free.extend(self._slots.values())
        self._slots.clear()
        self._last_stamp = -np.inf

    def _release(self, track_id: str):
        self._free.append(self._slots.pop(track_id))

    def expire(self, stamp: float):
        """Drop tracks not updated for more than `timeout` seconds before `stamp`."""
        while self._slots:
            track_id, slot = next(iter(self._slots.items()))
            if stamp - self._stamps[slot, (self._head[slot] - 1) % self.num_frames] <= self.timeout:
                break
            self._release(track_id)

    def _allocate(self, frame_shape: tuple) -> int:
        if not self._free:
            old = len(self._head)
            new = max(8, 2 * old)
            if self._frames.shape[2:] != frame_shape:  # first use fixes joints x channels
                self._frames = np.zeros((old,) + (self.num_frames,) + frame_shape, np.float32)
            grow = lambda a: np.concatenate([a, np.zeros((new - old,) + a.shape[1:], a.dtype)])  # noqa: E731
            self._frames, self._stamps = grow(self._frames), grow(self._stamps)
            self._head, self._num_real, self._count = grow(self._head), grow(self._num_real), grow(self._count)
            if self._cache is not None:
                self._cache = grow(self._cache)
            self._free.extend(range(new - 1, old - 1, -1))
        slot = self._free.pop()
        self._num_real[slot] = self._count[slot] = 0
        return slot

    def update(self, ids: list[str], frames: np.ndarray, stamp: float):
        """Append one frame per person: ids (P,), frames (P,17,3) model inputs, stamp seconds."""
        if stamp < self._last_stamp:
            self.reset()
        self._last_stamp = stamp
        self.expire(stamp)
        if len(ids) == 0:
            return
        frames = np.asarray(frames, np.float32)
        rows = {track_id: n for n, track_id in enumerate(ids)}  # a repeated id keeps its last row
        if len(rows) < len(ids):
            frames = frames[list(rows.values())]
        slots = []
        for track_id in rows:
            slot = self._slots.pop(track_id, None)
            self._slots[track_id] = slot = slot if slot is not None else self._allocate(frames.shape[1:])
            slots.append(slot)  # the id moved to the most recent end
        slots = np.array(slots)
        head = self._head[slots]
        newest = self._stamps[slots, head - 1]  # index -1 is the last ring slot, as (head - 1) % T
        restart = (self._num_real[slots] == 0) | (stamp < newest) | (stamp - newest > self.max_gap)
        same = ~restart & (stamp == newest)  # the same instant again: replace, don't stretch time
        if not (restart.any() or same.any()):  # the usual frame: every track steps on
            self._step(slots, frames, stamp)
        else:
            self._update_mixed(slots, frames, stamp, restart, same)
        while len(self._slots) > self.max_tracks:
            self._release(next(iter(self._slots)))  # evict the least recently updated

    def _step(self, s: np.ndarray, frames: np.ndarray, stamp: float):
        """Append frames to the rings of slots s (the ordinary step)."""
        head = self._head[s]
        self._frames[s, head] = frames
        self._stamps[s, head] = stamp
        self._head[s] = (head + 1) % self.num_frames
        self._num_real[s] = np.minimum(self._num_real[s] + 1, self.num_frames)
        self._count[s] += 1

    def _update_mixed(self, slots, frames, stamp, restart, same):
        step = ~restart & ~same
        s = slots[restart]
        self._frames[s] = frames[restart][:, None]
        self._stamps[s] = stamp
        self._head[s], self._num_real[s], self._count[s] = 0, 1, 1  # an empty cache: no key is valid
        s = slots[same]  # the newest frame is replaced, and so will its keys/values be (same count)
        self._frames[s, (self._head[s] - 1) % self.num_frames] = frames[same]
        self._step(slots[step], frames[step], stamp)

    # ---- streaming cache ----------------------------------------------------------------------
    def cache(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The cached keys/values (P,A,J,W-1,2C) and their ages (P,W-1) of the frames before each
        id's newest one (call after update). Age a = computed a frames ago; W marks an empty slot.
        The keys/values may be a view of the pool (consecutive slots): read them before store_cache."""
        slots = np.array([self._slots[i] for i in ids], np.int64)
        P = self._cache.shape[3]
        before = self._count[slots][:, None] - 1                                 # frames cached before the newest
        ages = (before - 1 - np.arange(P)[None]) % P + 1                          # slot r holds frame before - age
        ages = np.where(ages <= np.minimum(before, P), ages, P + 1)
        if len(slots) and (np.diff(slots) == 1).all():
            # the usual steady scene: the people, in message order, hold consecutive pool slots
            # (allocated in first-seen order), so the step reads them in place instead of copying
            # ~1 MB per person; the step only reads them, and store_cache writes after it
            return self._cache[slots[0]:slots[-1] + 1], ages
        return self._cache[slots], ages

    def store_cache(self, ids: list[str], kv: np.ndarray):
        """Write each id's newest frame's keys/values kv (P,A,J,2C) over its oldest cache slot."""
        slots = np.array([self._slots[i] for i in ids], np.int64)
        self._cache[slots, :, :, (self._count[slots] - 1) % self._cache.shape[3]] = kv

    def num_real_frames(self, track_id: str) -> int:
        """Frames seen since the track (re)started; 0 for an unknown id."""
        slot = self._slots.get(track_id)
        return int(self._num_real[slot]) if slot is not None else 0

    def num_real_frames_of(self, ids: list[str]) -> np.ndarray:
        """num_real_frames for many ids at once (P,)."""
        slots = np.array([self._slots.get(i, -1) for i in ids], np.int64)
        out = np.zeros(len(slots), np.int64)
        known = slots >= 0
        out[known] = self._num_real[slots[known]]
        return out

    def stamp_at(self, track_id: str, k: int) -> float:
        """Stamp of window frame T-1-k (k frames before the newest)."""
        slot = self._slots[track_id]
        return float(self._stamps[slot, (self._head[slot] - 1 - k) % self.num_frames])

    def windows(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> frames (P,T,17,3) float32 and stamps (P,T), oldest first. KeyError for unknown ids."""
        if not ids:
            return (np.empty((0, self.num_frames) + self._frames.shape[2:], np.float32),
                    np.empty((0, self.num_frames), np.float64))
        slots = np.array([self._slots[i] for i in ids])[:, None]
        ring = self._head[slots] + self._offsets  # (P,T) ring indices, oldest first
        ring %= self.num_frames
        return self._frames[slots, ring], self._stamps[slots, ring]
