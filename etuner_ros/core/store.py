"""SQLite sample store shared by the label collector (writer) and the tuner (reader).

WAL mode lets one process write while others read; every thread gets its own connection because
sqlite3 connections must not be shared across threads. Unlabelled frames are bounded by reservoir
sampling so a robot running for weeks keeps a fixed-size, uniform sample of everything it has seen.

Caregivers' corrections go through :meth:`SampleStore.add_corrections`, which applies, in one
transaction per batch (one fsync for many corrections):

- **the new-class policy** (``core/class_names.py``): a correction naming a class that is not known
  yet is *held* in the ``held`` table until the policy accepts the class; ``labelled_since``,
  ``count_labelled``, ``max_labelled_id`` and ``sample_labelled`` see only the ``labelled``
  table, so held samples are never trained on and never grow the head. Accepted classes are
  remembered in ``classes``; when a class is accepted its held samples move to ``labelled`` with
  new ids (so a reader that follows ``labelled_since`` sees them as new).
- **last correction wins, per region**: a correction for a region of a frame (its stamp and
  its box, ``Correction.box``) that already has a labelled or held sample replaces it (the old
  row is deleted and the new one inserted with a new id in the same transaction; counted as
  ``superseded``); corrections of different regions of one frame are all kept. "Last" is the
  order in which the collector received them. A rejected correction replaces nothing.

``add_labelled`` stays a raw insert without these rules (tools and tests).

The file format (tables, schema version, upgrade of older files) is ``core/store_schema.py``;
the records (``Sample``, ``Correction``, ``Outcome``), a sample's checks and its PNG and row
encodings are ``core/store_codec.py`` (re-exported here).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

from etuner_ros.core.class_names import ACCEPT, HOLD, REJECT, ClassPolicy, normalise_class
from etuner_ros.core.store_codec import (
    LABELLED_COLUMNS,
    UNLABELLED_COLUMNS,
    Correction,
    Outcome,
    Sample,
    check_image,
    check_region,
    check_stamp,
    encode_image,
    sample_from_row,
)
from etuner_ros.core.store_schema import REGION_COLUMNS, SCHEMA, SCHEMA_VERSION, upgrade

_LCOLS, _UCOLS = LABELLED_COLUMNS, UNLABELLED_COLUMNS
_RCOLS = ", ".join(REGION_COLUMNS)
# What moves from ``held`` to ``labelled`` when a class is accepted (all but the id).
_MOVED = _LCOLS.removeprefix("id, ")
# The rows a correction of this stamp and box replaces (IS: a NULL box matches a NULL box).
_SAME_REGION = "stamp_ns = ? AND box_x IS ? AND box_y IS ? AND box_w IS ? AND box_h IS ?"


class SampleStore:
    """Labelled samples plus a reservoir of unlabelled frames in ``path`` (SQLite, WAL)."""

    def __init__(self, path: str | os.PathLike[str], max_unlabelled: int = 2000,
                 *, seed: int | None = None, busy_timeout_ms: int = 30000) -> None:
        if max_unlabelled < 0:  # 0 is allowed: keep no unlabelled frames at all
            raise ValueError(f"max_unlabelled must be >= 0, got {max_unlabelled}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_unlabelled = int(max_unlabelled)
        self._busy_ms = int(busy_timeout_ms)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()  # guards _conns and _rng (Generator is not thread-safe)
        self._rng = np.random.default_rng(seed)
        self._closed = False
        self._conn().executescript(SCHEMA)  # idempotent DDL, safe if processes race here
        with self._tx() as c:
            version = upgrade(c)  # older files are upgraded in place (core/store_schema.py)
            # this file's identity: the first process to open it draws it, every later one
            # reads it; the tuner ties its label watermark to it (``core/resume.py``)
            c.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)",
                      (secrets.randbits(62) + 1,))
            self.store_id = int(c.execute(
                "SELECT value FROM meta WHERE key='store_id'").fetchone()[0])
        if version != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: schema version {version}, expected {SCHEMA_VERSION}")

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (re-opened after fork: a connection must not cross it)."""
        if self._closed:
            raise RuntimeError(f"SampleStore {self.path} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self._busy_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a human's label must survive power loss
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (IMMEDIATE) so it cannot deadlock on upgrade."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            # a failed COMMIT (disk full, I/O error) leaves the transaction open on this
            # thread's connection, and every later BEGIN on it would fail: close it first
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def add_labelled(self, image: np.ndarray, label: str, stamp_ns: int, *,
                     predicted: str | None = None, model_version: int | None = None,
                     confirms: bool = False, source: str = "", scenario: str = "") -> int:
        """Store a labelled sample; committed (durably) before the id is returned."""
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"label must be a non-empty string, got {label!r}")
        if predicted is not None and not isinstance(predicted, str):
            raise ValueError(f"predicted must be a string or None, got {predicted!r}")
        if model_version is not None:
            model_version = int(model_version)
        blob = encode_image(image)
        stamp = check_stamp(stamp_ns)
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO labelled (image, label, stamp_ns, predicted, model_version, confirms,"
                " source, scenario) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (blob, label, stamp, predicted, model_version, int(bool(confirms)),
                 str(source), str(scenario)))
            return int(cur.lastrowid)

    def add_corrections(self, items: list[Correction], policy: ClassPolicy,
                        known: set[str] | frozenset[str] = frozenset(),
                        max_held: int = 1000) -> list[Outcome]:
        """Store a batch of corrections in one committed transaction (see the module docstring
        for the rules); ``known``: classes the serving model has. Images are encoded before the
        write lock is taken. Returns one :class:`Outcome` per item, in order; nothing in the
        batch is committed unless every outcome is (an exception rolls the batch back)."""
        blobs: list[bytes | None] = []
        boxes: list[tuple[int | None, ...]] = []
        outcomes: list[Outcome | None] = []
        for it in items:
            try:
                check_stamp(it.stamp_ns)
                if normalise_class(it.label) != it.label:
                    raise ValueError(f"label {it.label!r} is not normalised")
                box = check_region(it.box, it.detection_index) or (None,) * 4
                blobs.append(encode_image(it.image))
                boxes.append(box)
                outcomes.append(None)
            except ValueError as exc:  # InvalidClassName is a ValueError too
                blobs.append(None)
                boxes.append((None,) * 4)
                outcomes.append(Outcome("rejected", reason=f"bad_sample: {exc}"))
        superseded = 0
        with self._tx() as c:
            accepted = {r[0] for r in c.execute("SELECT name FROM classes")} | set(known)
            for k, (it, blob, box) in enumerate(zip(items, blobs, boxes, strict=True)):
                if blob is None:
                    continue
                stamp = int(it.stamp_ns)
                region = (stamp, *box)
                votes = 1 + int(c.execute(
                    "SELECT COUNT(DISTINCT stamp_ns) FROM held WHERE label = ? AND stamp_ns != ?",
                    (it.label, stamp)).fetchone()[0])
                verdict = policy.decide(it.label, accepted, votes)
                if verdict.action == REJECT:
                    outcomes[k] = Outcome("rejected", reason=verdict.reason)
                    continue
                if verdict.action == HOLD and int(c.execute(
                        f"SELECT COUNT(*) FROM held WHERE NOT ({_SAME_REGION})",
                        region).fetchone()[0]) >= max_held:
                    outcomes[k] = Outcome("rejected", reason="held_full")
                    continue
                n_old = (c.execute(f"DELETE FROM labelled WHERE {_SAME_REGION}", region).rowcount
                         + c.execute(f"DELETE FROM held WHERE {_SAME_REGION}", region).rowcount)
                superseded += n_old
                values = (blob, it.label, stamp, it.predicted,
                          None if it.model_version is None else int(it.model_version),
                          int(bool(it.confirms)), str(it.source), str(it.scenario), *box,
                          None if it.detection_index is None else int(it.detection_index))
                table = "labelled" if verdict.action == ACCEPT else "held"
                cur = c.execute(
                    f"INSERT INTO {table} (image, label, stamp_ns, predicted, model_version, "
                    f"confirms, source, scenario, {_RCOLS}) VALUES ({', '.join('?' * 13)})",
                    values)
                out = Outcome("stored" if table == "labelled" else "held", int(cur.lastrowid),
                              verdict.reason, n_old)
                if verdict.action == ACCEPT and it.label not in accepted:
                    out.promoted = self._accept(c, it.label, verdict.reason)
                    accepted.add(it.label)
                outcomes[k] = out
            if superseded:
                c.execute("INSERT INTO meta VALUES ('superseded', ?) ON CONFLICT(key) DO UPDATE "
                          "SET value = value + excluded.value", (superseded,))
        return [o for o in outcomes if o is not None]

    @staticmethod
    def _accept(c: sqlite3.Connection, name: str, reason: str) -> list[int]:
        """Record ``name`` as accepted and move its held samples to ``labelled`` (new ids)."""
        c.execute("INSERT OR IGNORE INTO classes (name, reason) VALUES (?, ?)", (name, reason))
        top = int(c.execute("SELECT COALESCE(MAX(id), 0) FROM labelled").fetchone()[0])
        c.execute(f"INSERT INTO labelled ({_MOVED}) SELECT {_MOVED} FROM held WHERE label = ? "
                  "ORDER BY id", (name,))
        c.execute("DELETE FROM held WHERE label = ?", (name,))
        return [int(r[0]) for r in c.execute(
            "SELECT id FROM labelled WHERE id > ? ORDER BY id", (top,))]

    def accept_classes(self, names: list[str] | set[str], reason: str) -> list[int]:
        """Accept ``names`` (normalised; the serving model's classes, the allowed list) and
        release their held samples; returns the new ``labelled`` ids of released samples."""
        promoted: list[int] = []
        with self._tx() as c:
            for name in sorted(set(names)):
                promoted += self._accept(c, name, reason)
        return promoted

    def accepted_classes(self) -> set[str]:
        return {r[0] for r in self._conn().execute("SELECT name FROM classes")}

    def held_classes(self) -> dict[str, int]:
        """Classes waiting for acceptance -> number of distinct frames (votes) naming them."""
        return {str(k): int(v) for k, v in self._conn().execute(
            "SELECT label, COUNT(DISTINCT stamp_ns) FROM held GROUP BY label")}

    def count_held(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM held").fetchone()[0])

    def held(self) -> list[Sample]:
        """Every held sample, oldest first (for inspection; never for training)."""
        return self._query(f"SELECT {_LCOLS} FROM held ORDER BY id")

    def superseded_total(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key='superseded'").fetchone()
        return int(row[0]) if row else 0

    def add_unlabelled(self, image: np.ndarray, stamp_ns: int, *, scenario: str = "") -> int | None:
        """Offer a frame to the reservoir (Algorithm R over every frame ever offered, across
        processes: the counter lives in the DB). Returns the new row id, or None if not kept."""
        check_image(image)  # encode only frames that are kept: most are not, once full
        stamp = check_stamp(stamp_ns)
        conn = self._conn()
        conn.execute("PRAGMA synchronous=NORMAL")  # frames are cheap; skip the per-commit fsync
        try:
            with self._tx() as c:
                seen = c.execute("SELECT value FROM meta WHERE key='offered'").fetchone()
                seen = int(seen[0]) if seen else 0
                c.execute("INSERT OR REPLACE INTO meta VALUES ('offered', ?)", (seen + 1,))
                # A smaller max_unlabelled than a previous run: trim to the bound first.
                c.execute("DELETE FROM unlabelled WHERE slot >= ?", (self.max_unlabelled,))
                if seen < self.max_unlabelled:
                    slot = seen
                else:
                    with self._lock:
                        slot = int(self._rng.integers(0, seen + 1))
                    if slot >= self.max_unlabelled:
                        return None
                c.execute("DELETE FROM unlabelled WHERE slot = ?", (slot,))
                cur = c.execute(
                    "INSERT INTO unlabelled (image, stamp_ns, scenario, slot) VALUES (?, ?, ?, ?)",
                    (encode_image(image), stamp, str(scenario), slot))
                return int(cur.lastrowid)
        finally:
            conn.execute("PRAGMA synchronous=FULL")

    def _query(self, sql: str, args: tuple = ()) -> list[Sample]:
        return [sample_from_row(r) for r in self._conn().execute(sql, args).fetchall()]

    def _by_ids(self, table: str, cols: str, ids: list[int]) -> list[Sample]:
        """Rows for ``ids``, in the order given (callers pass a random order for training)."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._query(f"SELECT {cols} FROM {table} WHERE id IN ({marks})", tuple(ids))
        by_id = {s.id: s for s in rows}
        return [by_id[i] for i in ids if i in by_id]

    def _sample_ids(self, sql: str, args: tuple, n: int, rng: np.random.Generator) -> list[int]:
        ids = [r[0] for r in self._conn().execute(sql, args).fetchall()]
        if n <= 0 or not ids:
            return []
        pick = rng.choice(len(ids), size=min(n, len(ids)), replace=False)
        return [int(ids[i]) for i in pick]

    def labelled_since(self, after_id: int) -> list[Sample]:
        """Labelled samples with id > after_id, oldest first."""
        return self._query(f"SELECT {_LCOLS} FROM labelled WHERE id > ? ORDER BY id",
                           (int(after_id),))

    def count_labelled(self, after_id: int = 0) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM labelled WHERE id > ?",
                                        (int(after_id),)).fetchone()[0])

    def max_labelled_id(self) -> int:
        """Highest labelled id, 0 when empty (ids start at 1)."""
        return int(self._conn().execute("SELECT COALESCE(MAX(id), 0) FROM labelled").fetchone()[0])

    def sample_labelled(self, n: int, rng: np.random.Generator,
                        before_id: int | None = None) -> list[Sample]:
        """Up to ``n`` labelled samples drawn uniformly without replacement, in random order.

        ``before_id`` keeps ids strictly below it (replay of old data): the complement of
        ``labelled_since(w)`` is ``before_id=w + 1``.
        """
        if before_id is None:
            ids = self._sample_ids("SELECT id FROM labelled", (), n, rng)
        else:
            ids = self._sample_ids("SELECT id FROM labelled WHERE id < ?", (int(before_id),),
                                   n, rng)
        return self._by_ids("labelled", _LCOLS, ids)

    def unlabelled(self, n: int, rng: np.random.Generator) -> list[Sample]:
        """Up to ``n`` unlabelled frames drawn uniformly without replacement."""
        return self._by_ids("unlabelled", _UCOLS,
                            self._sample_ids("SELECT id FROM unlabelled", (), n, rng))

    def unlabelled_since(self, after_id: int) -> list[Sample]:
        """Kept unlabelled frames with id > after_id (newly kept ones), oldest first."""
        return self._query(f"SELECT {_UCOLS} FROM unlabelled WHERE id > ? ORDER BY id",
                           (int(after_id),))

    def count_unlabelled(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM unlabelled").fetchone()[0])

    def stats(self) -> dict[str, object]:
        """Counts for /diagnostics."""
        c = self._conn()
        offered = c.execute("SELECT value FROM meta WHERE key='offered'").fetchone()
        per_label = dict(c.execute("SELECT label, COUNT(*) FROM labelled GROUP BY label"))
        return {
            "labelled": self.count_labelled(),
            "confirmations": int(c.execute(
                "SELECT COUNT(*) FROM labelled WHERE confirms != 0").fetchone()[0]),
            "max_labelled_id": self.max_labelled_id(),
            "unlabelled": self.count_unlabelled(),
            "unlabelled_offered": int(offered[0]) if offered else 0,
            "max_unlabelled": self.max_unlabelled,
            "labels": {str(k): int(v) for k, v in per_label.items()},
            "held": self.count_held(),
            "held_classes": self.held_classes(),
            "superseded": self.superseded_total(),
        }

    def close(self) -> None:
        """Close every connection this object opened (in any thread of this process)."""
        with self._lock:
            conns, self._conns = self._conns, []
            self._closed = True
        for conn in conns:
            with suppress(sqlite3.Error):
                conn.close()

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Correction", "Outcome", "Sample", "SampleStore"]
