"""Track ids across frames and the per-track temporal windows."""
import time

import numpy as np

from posemoe_ros.pipeline.tracking import TrackAssigner, TrackManager

BASE = np.random.default_rng(0).normal(0, 40, (17, 2))  # a person-shaped cloud of joints, pixels


def crowd(offsets):
    """People at horizontal offsets (P,) -> xy (P,17,2), conf (P,17)."""
    xy = BASE[None] + np.stack([np.asarray(offsets, float), np.full(len(offsets), 300.0)], -1)[:, None]
    return xy, np.ones(xy.shape[:2])


def test_ids_stable_under_smooth_motion_and_list_reordering():
    assigner = TrackAssigner(max_distance=0.5)
    rng = np.random.default_rng(1)
    ids0 = assigner.assign(*crowd([100, 400, 700]), stamp=0.0)
    assert len(set(ids0)) == 3
    by_pos = dict(zip([100, 400, 700], ids0))
    for t in range(1, 30):
        offsets = np.array([100, 400, 700]) + 3.0 * t  # walking right
        order = rng.permutation(3)  # detectors list people in any order
        xy, conf = crowd(offsets[order])
        ids = assigner.assign(xy + rng.normal(0, 2, xy.shape), conf, stamp=t / 30)
        assert ids == [by_pos[[100, 400, 700][o]] for o in order]


def test_new_people_get_new_ids_and_far_jumps_are_not_matched():
    assigner = TrackAssigner(max_distance=0.5)
    a = assigner.assign(*crowd([100]), stamp=0.0)
    b = assigner.assign(*crowd([102, 900]), stamp=0.033)
    assert b[0] == a[0] and b[1] not in a
    c = assigner.assign(*crowd([102, 2000]), stamp=0.066)  # the second person "teleports": a new id
    assert c[0] == a[0] and c[1] not in (a + b)
    # a person who stays away longer than the timeout comes back under a new id
    d = assigner.assign(*crowd([102]), stamp=5.0)
    assert d[0] != a[0]


def test_fill_ids_keeps_given_ids_fills_empty_and_reports_duplicates():
    assigner = TrackAssigner()
    ids, dup = assigner.fill_ids(["", "alice"], *crowd([100, 600]), 0.0)
    assert ids[1] == "alice" and ids[0] and dup == []
    ids2, dup = assigner.fill_ids(["bob", "alice", "alice", ""], *crowd([100, 600, 650, 102]), 0.033)
    assert dup == [2]
    # "bob" was given for the person at 100, so the empty row at 102 cannot take that track either
    assert ids2[:3] == ["bob", "alice", "alice"] and ids2[3] not in ("bob", "alice")
    # a filled-in id matches the remembered track of an empty-id person
    ids3, _ = assigner.fill_ids(["", ""], *crowd([601, 99]), 0.066)
    assert ids3 == ["alice", "bob"]


def frame(value):
    return np.full((1, 17, 3), value, np.float32)


def test_buffer_pads_new_tracks_and_keeps_chronological_order():
    tracks = TrackManager(num_frames=5, timeout=1.0, max_gap=0.5)
    tracks.update(["a"], frame(1), 0.0)
    assert tracks.num_real_frames("a") == 1 and tracks.num_real_frames("zzz") == 0
    w, s = tracks.windows(["a"])
    assert w.shape == (1, 5, 17, 3) and w.flags.c_contiguous
    assert (w == 1).all() and (s == 0).all()  # edge padding with the first frame
    for t in range(2, 9):  # wraps around the ring
        tracks.update(["a"], frame(t), (t - 1) * 0.1)
    w, s = tracks.windows(["a"])
    np.testing.assert_array_equal(w[0, :, 0, 0], [4, 5, 6, 7, 8])
    np.testing.assert_allclose(s[0], [0.3, 0.4, 0.5, 0.6, 0.7])
    assert tracks.num_real_frames("a") == 5
    assert tracks.stamp_at("a", 0) == s[0, -1] and tracks.stamp_at("a", 2) == s[0, -3]


def test_batched_windows_for_several_tracks():
    tracks = TrackManager(num_frames=3, timeout=1.0, max_gap=0.5)
    tracks.update(["a", "b"], np.concatenate([frame(1), frame(10)]), 0.0)
    tracks.update(["b", "a"], np.concatenate([frame(11), frame(2)]), 0.1)
    tracks.update(["c"], frame(100), 0.2)
    w, s = tracks.windows(["c", "a", "b"])
    np.testing.assert_array_equal(w[:, :, 5, 2], [[100, 100, 100], [1, 1, 2], [10, 10, 11]])
    assert [tracks.num_real_frames(i) for i in "abc"] == [2, 2, 1]


def test_cache_of_people_in_pool_order_is_read_in_place_and_equals_the_gathered_copy():
    """The streaming cache of a steady scene (people in first-seen order) is handed to the step
    without a copy; any other order gets a gathered copy with the same contents."""
    tracks = TrackManager(num_frames=4, cache_shape=(2, 17, 3, 8))
    ids = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    for n in range(5):
        tracks.update(ids, np.zeros((3, 17, 3)), n / 30)
        tracks.store_cache(ids, rng.normal(size=(3, 2, 17, 8)).astype(np.float32))
    in_order, ages = tracks.cache(ids)
    shuffled, ages_shuffled = tracks.cache(["c", "a", "b"])
    assert np.shares_memory(in_order, tracks._cache) and not np.shares_memory(shuffled, tracks._cache)
    np.testing.assert_array_equal(shuffled, in_order[[2, 0, 1]])
    np.testing.assert_array_equal(ages_shuffled, ages[[2, 0, 1]])
    some, _ = tracks.cache(["a", "c"])  # slots 0 and 2: not consecutive, gathered
    np.testing.assert_array_equal(some, in_order[[0, 2]])


def test_resets_on_backwards_stamp_and_long_gap_and_expiry():
    tracks = TrackManager(num_frames=4, timeout=1.0, max_gap=0.5)
    for t in range(4):
        tracks.update(["a", "b"], np.concatenate([frame(t), frame(t)]), t * 0.1)
    # a long gap for "a" restarts its window
    tracks.update(["a"], frame(9), 0.3 + 0.6)
    assert tracks.num_real_frames("a") == 1 and (tracks.windows(["a"])[0] == 9).all()
    assert tracks.num_real_frames("b") == 4
    # after the timeout "b" is gone
    tracks.update(["a"], frame(10), 0.3 + 1.05)
    assert "b" not in tracks and len(tracks) == 1
    # the same stamp again replaces the newest frame rather than adding one
    tracks.update(["a"], frame(11), 0.3 + 1.05)
    assert tracks.num_real_frames("a") == 2 and tracks.windows(["a"])[0][0, -1, 0, 0] == 11
    # the bag loops: stamps go backwards, every track starts over
    tracks.update(["c"], frame(5), 0.0)
    assert tracks.ids == ["c"] and tracks.num_real_frames("c") == 1


def test_assigner_resets_when_stamps_go_backwards():
    assigner = TrackAssigner()
    a = assigner.assign(*crowd([100]), stamp=10.0)
    b = assigner.assign(*crowd([100]), stamp=1.0)
    assert b != a


def test_bounded_under_many_distinct_ids():
    tracks = TrackManager(num_frames=27, timeout=100.0, max_gap=10.0, max_tracks=64)
    assigner = TrackAssigner(timeout=100.0, max_tracks=64)
    start = time.perf_counter()
    for n in range(10_000):
        ids, _ = assigner.fill_ids([f"id{n}", ""], *crowd([0.0, 5000.0 + 1000 * n]), n * 0.01)
        tracks.update(ids, np.concatenate([frame(n), frame(n)]), n * 0.01)
        assert len(tracks) <= 64
    assert len(tracks) == 64 and len(assigner._seen) <= 64
    assert "id9999" in tracks and "id0" not in tracks  # the oldest were evicted
    assert time.perf_counter() - start < 30
