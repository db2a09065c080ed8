"""Who is who across frames, and each person's temporal window of model inputs.

TrackAssigner gives people without detector ids stable string ids ("0", "1", ...) by matching them
to the people seen recently (Hungarian assignment on a scale-normalised joint distance).
TrackManager keeps one fixed-size ring buffer of model-input frames per id.

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


class TrackBuffer:
    """Ring buffer of one person's last `num_frames` model-input frames (17,3) and their stamps."""

    def __init__(self, num_frames: int, num_joints: int = NUM_JOINTS, channels: int = 3):
        self.frames = np.zeros((num_frames, num_joints, channels), np.float32)
        self.stamps = np.zeros(num_frames, np.float64)
        self.head = 0  # slot the next frame goes to; the oldest frame sits here once full
        self.num_real = 0  # frames actually seen since the last reset (the rest is padding)

    @property
    def last_stamp(self) -> float:
        return float(self.stamps[self.head - 1])

    def reset(self, frame: np.ndarray, stamp: float):
        """Start over with `frame` repeated over the whole window (edge padding)."""
        self.frames[:] = frame
        self.stamps[:] = stamp
        self.head, self.num_real = 0, 1

    def push(self, frame: np.ndarray, stamp: float, max_gap: float = np.inf):
        if self.num_real == 0 or stamp < self.last_stamp or stamp - self.last_stamp > max_gap:
            self.reset(frame, stamp)
        elif stamp == self.last_stamp:
            self.frames[self.head - 1] = frame  # the same instant again: replace, don't stretch time
        else:
            self.frames[self.head] = frame
            self.stamps[self.head] = stamp
            self.head = (self.head + 1) % len(self.stamps)
            self.num_real = min(self.num_real + 1, len(self.stamps))

    def copy_into(self, frames_out: np.ndarray, stamps_out: np.ndarray):
        """Write the window oldest-first into preallocated (T,17,3) and (T,) arrays."""
        h, T = self.head, len(self.stamps)
        frames_out[: T - h], frames_out[T - h:] = self.frames[h:], self.frames[:h]
        stamps_out[: T - h], stamps_out[T - h:] = self.stamps[h:], self.stamps[:h]

    def stamp_at(self, k: int) -> float:
        """Stamp of window frame T-1-k (k frames before the newest)."""
        return float(self.stamps[(self.head - 1 - k) % len(self.stamps)])


class TrackManager:
    """TrackBuffers by id, with expiry, resets and a cap on how many are kept."""

    def __init__(self, num_frames: int, timeout: float = 1.0, max_gap: float = 0.5, max_tracks: int = 256):
        self.num_frames = num_frames
        self.timeout = timeout
        self.max_gap = max_gap
        self.max_tracks = max_tracks
        self._tracks: OrderedDict[str, TrackBuffer] = OrderedDict()  # least recently updated first
        self._last_stamp = -np.inf

    def __len__(self) -> int:
        return len(self._tracks)

    def __contains__(self, track_id: str) -> bool:
        return track_id in self._tracks

    @property
    def ids(self) -> list[str]:
        return list(self._tracks)

    def reset(self):
        self._tracks.clear()
        self._last_stamp = -np.inf

    def expire(self, stamp: float):
        """Drop tracks not updated for more than `timeout` seconds before `stamp`."""
        while self._tracks:
            track_id, track = next(iter(self._tracks.items()))
            if stamp - track.last_stamp <= self.timeout:
                break
            del self._tracks[track_id]

    def update(self, ids: list[str], frames: np.ndarray, stamp: float):
        """Append one frame per person: ids (P,), frames (P,17,3) model inputs, stamp seconds."""
        if stamp < self._last_stamp:
            self.reset()
        self._last_stamp = stamp
        self.expire(stamp)
        for track_id, frame in zip(ids, frames):
            track = self._tracks.pop(track_id, None)
            if track is None:
                track = TrackBuffer(self.num_frames, *frames.shape[1:])
            track.push(frame, stamp, self.max_gap)
            self._tracks[track_id] = track  # move to the most recent end
        while len(self._tracks) > self.max_tracks:
            self._tracks.popitem(last=False)  # evict the least recently updated

    def num_real_frames(self, track_id: str) -> int:
        """Frames seen since the track (re)started; 0 for an unknown id."""
        track = self._tracks.get(track_id)
        return track.num_real if track is not None else 0

    def stamp_at(self, track_id: str, k: int) -> float:
        return self._tracks[track_id].stamp_at(k)

    def windows(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> frames (P,T,17,3) float32 and stamps (P,T), oldest first. KeyError for unknown ids."""
        tracks = [self._tracks[i] for i in ids]
        shape = tracks[0].frames.shape if tracks else (self.num_frames, NUM_JOINTS, 3)
        frames = np.empty((len(ids),) + shape, np.float32)
        stamps = np.empty((len(ids), self.num_frames), np.float64)
        for n, track in enumerate(tracks):
            track.copy_into(frames[n], stamps[n])
        return frames, stamps
