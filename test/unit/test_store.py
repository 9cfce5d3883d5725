"""SampleStore: validation, lossless PNG, commit visibility across processes, reservoir bound."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from etuner_ros.core.class_names import ClassPolicy
from etuner_ros.core.store import Correction, SampleStore


def _img(rng: np.random.Generator, h: int = 24, w: int = 32) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def store(tmp_path: Path):
    s = SampleStore(tmp_path / "samples.db", max_unlabelled=50, seed=0)
    yield s
    s.close()


def test_png_round_trip_exact_and_metadata(store: SampleStore) -> None:
    rng = np.random.default_rng(0)
    img = _img(rng)
    img[0, 0] = (255, 0, 0)  # channel order must survive the RGB<->BGR trip
    sid = store.add_labelled(img, "cup", 123, predicted="mug", model_version=4,
                             confirms=False, source="caregiver", scenario="kitchen")
    [s] = store.labelled_since(0)
    assert s.id == sid and s.image.dtype == np.uint8
    np.testing.assert_array_equal(s.image, img)
    assert (s.label, s.stamp_ns, s.predicted, s.model_version, s.confirms, s.source,
            s.scenario) == ("cup", 123, "mug", 4, False, "caregiver", "kitchen")
    view = _img(rng, 40, 40)[::2, ::2]  # non-contiguous input
    store.add_labelled(view, "mug", 5, confirms=True)
    np.testing.assert_array_equal(store.labelled_since(sid)[0].image, view)
    assert store.labelled_since(sid)[0].confirms is True


@pytest.mark.parametrize("image, label, stamp", [
    (np.zeros((8, 8, 3), np.float32), "cup", 1),
    (np.zeros((8, 8), np.uint8), "cup", 1),
    (np.zeros((8, 8, 4), np.uint8), "cup", 1),
    (np.zeros((0, 8, 3), np.uint8), "cup", 1),
    ([[0, 0, 0]], "cup", 1),
    (np.zeros((8, 8, 3), np.uint8), "", 1),
    (np.zeros((8, 8, 3), np.uint8), "  ", 1),
    (np.zeros((8, 8, 3), np.uint8), "cup", -1),
    (np.zeros((8, 8, 3), np.uint8), "cup", 1.5),
])
def test_bad_input_rejected(store: SampleStore, image, label, stamp) -> None:
    with pytest.raises(ValueError):
        store.add_labelled(image, label, stamp)
    assert store.count_labelled() == 0
    if label.strip():  # the image or stamp is what is bad
        with pytest.raises(ValueError):
            store.add_unlabelled(image, stamp)
        assert store.count_unlabelled() == 0


def test_ids_counts_and_sampling(store: SampleStore) -> None:
    rng = np.random.default_rng(1)
    assert store.max_labelled_id() == 0 and store.sample_labelled(3, rng) == []
    ids = [store.add_labelled(_img(rng, 4, 4), f"c{i % 3}", i) for i in range(10)]
    assert ids == sorted(ids) and store.max_labelled_id() == ids[-1]
    assert store.count_labelled() == 10 and store.count_labelled(after_id=ids[6]) == 3
    assert [s.id for s in store.labelled_since(ids[6])] == ids[7:]
    got = store.sample_labelled(4, rng)
    assert len(got) == 4 and len({s.id for s in got}) == 4
    old = store.sample_labelled(100, rng, before_id=ids[5])
    assert sorted(s.id for s in old) == ids[:5]
    assert store.stats()["labelled"] == 10 and store.stats()["labels"]["c0"] == 4


def test_commit_visible_to_other_process_immediately(store: SampleStore) -> None:
    rng = np.random.default_rng(2)
    sid = store.add_labelled(_img(rng), "plate", 7)
    code = ("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]);"
            "print(c.execute('SELECT id,label FROM labelled').fetchall())")
    out = subprocess.run([sys.executable, "-c", code, str(store.path)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == f"[({sid}, 'plate')]"
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_two_stores_and_threads_share_one_db(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    writer, reader = SampleStore(path), SampleStore(path)
    rng = np.random.default_rng(3)
    imgs = [_img(rng, 4, 4) for _ in range(20)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(5):
                writer.add_labelled(imgs[k * 5 + i], f"t{k}", i)
                reader.count_labelled()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert reader.count_labelled() == 20 and reader.stats()["labels"]["t2"] == 5
    writer.close()
    reader.close()
    with pytest.raises(RuntimeError, match="closed"):
        reader.count_labelled()


def test_schema_version_recorded(store: SampleStore) -> None:
    con = sqlite3.connect(store.path)
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
    SampleStore(store.path).close()  # reopening does not add a second row
    assert con.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1


def test_reservoir_bounded_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    rng = np.random.default_rng(4)
    img = _img(rng, 2, 2)
    s = SampleStore(path, max_unlabelled=10, seed=1)
    kept = [s.add_unlabelled(img, i, scenario="a") for i in range(10)]
    assert None not in kept and s.count_unlabelled() == 10
    later = [s.add_unlabelled(img, 10 + i) for i in range(90)]
    assert s.count_unlabelled() == 10 and any(k is None for k in later)
    new = [k for k in later if k is not None]
    current = {u.id for u in s.unlabelled_since(0)}
    assert [u.id for u in s.unlabelled_since(kept[-1])] == [k for k in new if k in current]
    s.close()
    s = SampleStore(path, max_unlabelled=4, seed=2)  # smaller bound on reopen: trimmed
    s.add_unlabelled(img, 1000)
    assert s.count_unlabelled() <= 4 and s.stats()["unlabelled_offered"] == 101
    assert len(s.unlabelled(3, rng)) == 3
    s.close()
    zero = SampleStore(tmp_path / "z.db", max_unlabelled=0)
    assert zero.add_unlabelled(img, 1) is None and zero.count_unlabelled() == 0
    zero.close()


def test_reservoir_roughly_uniform(tmp_path: Path) -> None:
    """Offer 200 frames into a reservoir of 20, many times: every frame is kept ~10% of runs."""
    img = np.zeros((1, 1, 3), np.uint8)
    hits = np.zeros(200)
    runs = 30
    for r in range(runs):
        s = SampleStore(tmp_path / f"u{r}.db", max_unlabelled=20, seed=r)
        for i in range(200):
            s.add_unlabelled(img, i)
        stamps = [u.stamp_ns for u in s.unlabelled_since(0)]
        assert len(stamps) == 20
        hits[stamps] += 1
        s.close()
    first, last = hits[:100].sum(), hits[100:].sum()
    # Each half expects 300 hits (sd ~ 12 with these counts); a FIFO or "keep first" would be 0/600.
    assert 240 < first < 360 and 240 < last < 360
    assert hits.max() <= 12  # expected 3 per frame


def _c(label: str, stamp: int, value: int = 0, **kw) -> Correction:
    return Correction(np.full((4, 4, 3), value, np.uint8), label, stamp, **kw)


VOTES3 = ClassPolicy.build([], 3)


def test_new_class_held_until_votes_then_released_as_new_ids(store: SampleStore) -> None:
    [o] = store.add_corrections([_c("cup", 1)], VOTES3, known={"cup"})
    assert o.state == "stored" and store.max_labelled_id() == o.id
    watermark = store.max_labelled_id()
    outs = store.add_corrections([_c("walker", 2), _c("walker", 3)], VOTES3, known={"cup"})
    assert [o.state for o in outs] == ["held", "held"]
    assert store.count_labelled() == 1 and store.labelled_since(watermark) == []
    assert store.held_classes() == {"walker": 2} and "walker" not in store.accepted_classes()
    [third] = store.add_corrections([_c("walker", 4)], VOTES3, known={"cup"})
    assert third.state == "stored" and third.reason == "3 votes"
    new = store.labelled_since(watermark)
    assert sorted(s.stamp_ns for s in new) == [2, 3, 4] and min(s.id for s in new) > watermark
    assert set(third.promoted) | {third.id} == {s.id for s in new}
    assert store.count_held() == 0 and "walker" in store.accepted_classes()
    [later] = store.add_corrections([_c("walker", 5)], VOTES3)
    assert later.state == "stored" and later.reason == "known"


def test_votes_count_distinct_frames(store: SampleStore) -> None:
    for _ in range(5):  # the same frame corrected again and again is one vote
        [o] = store.add_corrections([_c("walker", 7)], VOTES3)
        assert o.state == "held"
    assert store.held_classes() == {"walker": 1} and store.count_held() == 1


def test_held_class_stays_held_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with SampleStore(path) as s:
        s.add_corrections([_c("typo_cup", 1), _c("cup", 2)], VOTES3, known={"cup"})
    with SampleStore(path) as s:  # no model classes passed: nothing re-adds the held name
        assert s.count_labelled() == 1 and [x.label for x in s.labelled_since(0)] == ["cup"]
        assert s.held_classes() == {"typo_cup": 1}
        assert [x.label for x in s.held()] == ["typo_cup"]


def test_allowed_list_rejects_and_zero_votes_never_hold(store: SampleStore) -> None:
    closed = ClassPolicy.build(["cup", "walker"], 3)
    outs = store.add_corrections([_c("walker", 1), _c("wlaker", 2), _c("cup", 3)], closed)
    assert [(o.state, o.reason) for o in outs] == [
        ("stored", "allowed_classes"), ("rejected", "not_allowed"), ("stored", "allowed_classes")]
    [o] = store.add_corrections([_c("bottle", 4)], ClassPolicy.build([], 0))
    assert (o.state, o.reason) == ("rejected", "new_classes_off") and store.count_held() == 0


def test_last_correction_of_a_stamp_wins(store: SampleStore) -> None:
    [a] = store.add_corrections([_c("cup", 10, 1)], VOTES3, known={"cup", "mug"})
    watermark = store.max_labelled_id()
    [b] = store.add_corrections([_c("mug", 10, 2)], VOTES3, known={"cup", "mug"})
    assert b.state == "stored" and b.superseded == 1 and b.id > a.id
    [s] = store.labelled_since(0)
    assert (s.label, s.id) == ("mug", b.id) and [x.id for x in store.labelled_since(watermark)] \
        == [b.id]
    # within one batch too, in order
    outs = store.add_corrections([_c("cup", 11), _c("mug", 11), _c("cup", 11)], VOTES3,
                                 known={"cup", "mug"})
    assert [o.superseded for o in outs] == [0, 1, 1]
    assert [(x.stamp_ns, x.label) for x in store.labelled_since(0)] == [(10, "mug"), (11, "cup")]
    assert store.superseded_total() == 3 and store.stats()["superseded"] == 3


def test_supersede_crosses_held_and_labelled_but_not_rejected(store: SampleStore) -> None:
    store.add_corrections([_c("walker", 20)], VOTES3, known={"cup"})
    [o] = store.add_corrections([_c("cup", 20)], VOTES3, known={"cup"})
    assert o.superseded == 1 and store.count_held() == 0 and store.count_labelled() == 1
    [o] = store.add_corrections([_c("walker", 20)], VOTES3, known={"cup"})
    assert o.state == "held" and o.superseded == 1 and store.count_labelled() == 0
    closed = ClassPolicy.build(["cup"], 3)
    store.add_corrections([_c("cup", 21)], closed)
    [o] = store.add_corrections([_c("nope", 21)], closed)
    assert o.state == "rejected" and [x.label for x in store.labelled_since(0)] == ["cup"]


def test_held_bound_and_bad_samples_do_not_spoil_the_batch(store: SampleStore) -> None:
    outs = store.add_corrections([_c(f"new{i}", i) for i in range(4)], VOTES3, max_held=3)
    assert [o.state for o in outs] == ["held", "held", "held", "rejected"]
    assert outs[3].reason == "held_full"
    bad = [Correction(np.zeros((4, 4), np.uint8), "cup", 50), _c("Cup", 51), _c("cup", -1),
           _c("cup", 52)]
    outs = store.add_corrections(bad, VOTES3, known={"cup"})
    assert [o.state for o in outs] == ["rejected", "rejected", "rejected", "stored"]
    assert all(o.reason.startswith("bad_sample") for o in outs[:3])


def test_accept_classes_releases_held_samples(store: SampleStore) -> None:
    store.add_corrections([_c("walker", 1), _c("keys", 2)], VOTES3)
    ids = store.accept_classes(["walker"], "model")
    assert [s.id for s in store.labelled_since(0)] == ids and store.held_classes() == {"keys": 1}
    assert store.accept_classes(["walker"], "model") == []


def test_schema_v1_store_is_migrated_and_bad_names_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    rng = np.random.default_rng(5)
    with SampleStore(path) as s:
        for i, label in enumerate(["cup", "../../etc/passwd", "x" * 10_000, "cup\nforged", "book"]):
            s.add_labelled(_img(rng, 4, 4), label, i)
    con = sqlite3.connect(path)
    con.executescript("DELETE FROM schema_version; INSERT INTO schema_version VALUES (1);"
                      "DROP TABLE classes; DROP TABLE held; DROP TABLE quarantined;")
    con.close()
    with SampleStore(path) as s:
        assert sorted(x.label for x in s.labelled_since(0)) == ["book", "cup"]
        assert s.accepted_classes() == {"book", "cup"}
    con = sqlite3.connect(path)
    assert con.execute("SELECT COUNT(*) FROM quarantined").fetchone()[0] == 3
    assert con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 3


# --- regions (schema 3) -----------------------------------------------------------------------
def test_region_is_stored_and_last_correction_wins_per_region(store: SampleStore) -> None:
    known = {"cup", "book"}
    a, b = (1, 2, 10, 12), (20, 2, 8, 8)
    outs = store.add_corrections([_c("cup", 30, 1, box=a, detection_index=0),
                                  _c("book", 30, 2, box=b, detection_index=1)], VOTES3, known)
    assert [(o.state, o.superseded) for o in outs] == [("stored", 0), ("stored", 0)]
    [o] = store.add_corrections([_c("book", 30, 3, box=a, detection_index=0)], VOTES3, known)
    assert o.superseded == 1  # the same region again: replaces the first, not the other region
    got = sorted(store.labelled_since(0), key=lambda x: x.box)
    assert [(x.label, x.box, x.detection_index, int(x.image[0, 0, 0])) for x in got] == [
        ("book", a, 0, 3), ("book", b, 1, 2)]
    # a frame-level correction (no box) is a region of its own: it replaces no boxed sample
    [o] = store.add_corrections([_c("cup", 30)], VOTES3, known)
    assert o.superseded == 0 and store.count_labelled() == 3
    assert store.labelled_since(o.id - 1)[0].box is None


def test_region_survives_hold_and_release_and_bad_regions_are_bad_samples(
        store: SampleStore) -> None:
    [h] = store.add_corrections([_c("walker", 40, box=(0, 0, 3, 3), detection_index=2)], VOTES3)
    assert h.state == "held" and store.held()[0].box == (0, 0, 3, 3)
    [new] = store.accept_classes(["walker"], "model")
    [s] = store.labelled_since(0)
    assert (s.id, s.box, s.detection_index) == (new, (0, 0, 3, 3), 2)
    bad = [_c("cup", 41, box=(0, 0, 0, 3)), _c("cup", 42, box=(-1, 0, 3, 3)),
           _c("cup", 43, box=(0, 0, 3)), _c("cup", 44, box=(0, 0, 3.5, 3)),
           _c("cup", 45, box=(0, 0, 3, 3), detection_index=-1)]
    outs = store.add_corrections(bad, VOTES3, known={"cup"})
    assert all(o.state == "rejected" and o.reason.startswith("bad_sample") for o in outs)


def test_held_bound_counts_other_regions_of_the_same_frame(store: SampleStore) -> None:
    outs = store.add_corrections([_c(f"new{i}", 50, box=(i, 0, 2, 2)) for i in range(3)],
                                 VOTES3, max_held=2)
    assert [o.state for o in outs] == ["held", "held", "rejected"]
    [o] = store.add_corrections([_c("new9", 50, box=(1, 0, 2, 2))], VOTES3, max_held=2)
    assert (o.state, o.superseded) == ("held", 1)  # replaces one: the bound is not exceeded


# The file format of version 2 (before regions), as robots in the field have it on disk.
V2_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE labelled (
    id INTEGER PRIMARY KEY AUTOINCREMENT, image BLOB NOT NULL, label TEXT NOT NULL,
    stamp_ns INTEGER NOT NULL, predicted TEXT, model_version INTEGER,
    confirms INTEGER NOT NULL DEFAULT 0, source TEXT NOT NULL DEFAULT '',
    scenario TEXT NOT NULL DEFAULT '');
CREATE TABLE unlabelled (
    id INTEGER PRIMARY KEY AUTOINCREMENT, image BLOB NOT NULL, stamp_ns INTEGER NOT NULL,
    scenario TEXT NOT NULL DEFAULT '', slot INTEGER NOT NULL UNIQUE);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE held (
    id INTEGER PRIMARY KEY AUTOINCREMENT, image BLOB NOT NULL, label TEXT NOT NULL,
    stamp_ns INTEGER NOT NULL, predicted TEXT, model_version INTEGER,
    confirms INTEGER NOT NULL DEFAULT 0, source TEXT NOT NULL DEFAULT '',
    scenario TEXT NOT NULL DEFAULT '');
CREATE TABLE classes (name TEXT PRIMARY KEY, reason TEXT NOT NULL DEFAULT '');
CREATE TABLE quarantined (
    id INTEGER PRIMARY KEY, image BLOB NOT NULL, label TEXT NOT NULL, stamp_ns INTEGER NOT NULL,
    predicted TEXT, model_version INTEGER, confirms INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT '', scenario TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL);
CREATE INDEX labelled_stamp ON labelled (stamp_ns);
CREATE INDEX held_stamp ON held (stamp_ns);
CREATE INDEX held_label ON held (label, stamp_ns);
INSERT INTO schema_version VALUES (2);
"""


def test_schema_v2_store_opens_upgraded_with_its_samples_intact(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "v2.db"
    img = _img(np.random.default_rng(6), 6, 8)
    png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes()
    con = sqlite3.connect(path)
    con.executescript(V2_SCHEMA)
    con.execute("INSERT INTO labelled (image, label, stamp_ns, predicted, model_version) "
                "VALUES (?, 'cup', 7, 'mug', 3)", (png,))
    con.execute("INSERT INTO held (image, label, stamp_ns) VALUES (?, 'walker', 8)", (png,))
    con.execute("INSERT INTO classes VALUES ('cup', 'model')")
    con.commit()
    con.close()
    with SampleStore(path) as s:  # two openers: the upgrade runs once
        SampleStore(path).close()
        [old] = s.labelled_since(0)
        assert (old.label, old.stamp_ns, old.predicted, old.model_version, old.box,
                old.detection_index) == ("cup", 7, "mug", 3, None, None)
        np.testing.assert_array_equal(old.image, img)
        assert s.held()[0].box is None
        # a whole-frame correction of the old frame still supersedes its old sample
        [o] = s.add_corrections([_c("book", 7)], VOTES3, known={"book"})
        assert o.superseded == 1
        [o] = s.add_corrections([_c("cup", 9, box=(1, 1, 2, 2), detection_index=0)], VOTES3)
        assert o.state == "stored" and s.labelled_since(o.id - 1)[0].box == (1, 1, 2, 2)
        assert s.accept_classes(["walker"], "model")  # held rows move with their columns
    con = sqlite3.connect(path)
    assert [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY version")] \
        == [2, 3]
    con.close()
