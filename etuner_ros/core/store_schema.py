"""The sample store's file format: its tables, its version, and the upgrade of older files.

Kept apart from ``core/store.py`` because it changes for a different reason: the store's everyday
API (adding and sampling frames, the correction rules) changes with what the nodes need, while
this module changes only when the file format does, and then must keep reading every format a
robot in the field may still have on disk. Each upgrade runs once, inside the write transaction
that opens the store, so a file is either fully upgraded or untouched.

Versions:

- 1: any class name was stored.
- 2: class names follow ``core/class_names.py``; ``held``, ``classes`` and ``quarantined`` tables.
- 3: a labelled or held sample records the region of its frame it shows (``box_x``, ``box_y``,
  ``box_w``, ``box_h``: the region's box in the frame, before the crop's context is added;
  ``detection_index``: its index in the DetectionArray, NULL when none was published). Rows of
  older files keep NULL there: they show the whole frame.
"""

from __future__ import annotations

import sqlite3

from etuner_ros.core.class_names import InvalidClassName, normalise_class

SCHEMA_VERSION = 3

# Idempotent DDL (IF NOT EXISTS): safe when several processes open a new file at once.
SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS labelled (
    id INTEGER PRIMARY KEY AUTOINCREMENT, image BLOB NOT NULL, label TEXT NOT NULL,
    stamp_ns INTEGER NOT NULL, predicted TEXT, model_version INTEGER,
    confirms INTEGER NOT NULL DEFAULT 0, source TEXT NOT NULL DEFAULT '',
    scenario TEXT NOT NULL DEFAULT '', box_x INTEGER, box_y INTEGER, box_w INTEGER,
    box_h INTEGER, detection_index INTEGER);
CREATE TABLE IF NOT EXISTS unlabelled (
    id INTEGER PRIMARY KEY AUTOINCREMENT, image BLOB NOT NULL, stamp_ns INTEGER NOT NULL,
    scenario TEXT NOT NULL DEFAULT '', slot INTEGER NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS held (
    id INTEGER PRIMARY KEY AUTOINCREMENT, image BLOB NOT NULL, label TEXT NOT NULL,
    stamp_ns INTEGER NOT NULL, predicted TEXT, model_version INTEGER,
    confirms INTEGER NOT NULL DEFAULT 0, source TEXT NOT NULL DEFAULT '',
    scenario TEXT NOT NULL DEFAULT '', box_x INTEGER, box_y INTEGER, box_w INTEGER,
    box_h INTEGER, detection_index INTEGER);
CREATE TABLE IF NOT EXISTS classes (
    name TEXT PRIMARY KEY, reason TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS quarantined (
    id INTEGER PRIMARY KEY, image BLOB NOT NULL, label TEXT NOT NULL, stamp_ns INTEGER NOT NULL,
    predicted TEXT, model_version INTEGER, confirms INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT '', scenario TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS labelled_stamp ON labelled (stamp_ns);
CREATE INDEX IF NOT EXISTS held_stamp ON held (stamp_ns);
CREATE INDEX IF NOT EXISTS held_label ON held (label, stamp_ns);
"""

# The columns ``labelled``, ``held`` and (before ``reason``) ``quarantined`` share, in order.
SAMPLE_COLUMNS = "id, image, label, stamp_ns, predicted, model_version, confirms, source, scenario"
# The region columns (version 3) of ``labelled`` and ``held``, in order.
REGION_COLUMNS = ("box_x", "box_y", "box_w", "box_h", "detection_index")


def upgrade(c: sqlite3.Connection) -> int:
    """Stamp a new file with :data:`SCHEMA_VERSION` and bring an older one up to it; returns the
    version the file has now (a newer file keeps its own, which the caller refuses). ``c`` must
    be inside a write transaction, so the upgrade commits or rolls back as one."""
    if c.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0:
        c.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
    version = c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    if version == 1:
        _migrate_v1(c)
        version = 2
    if version == 2:
        _migrate_v2(c)
        version = 3
    return version


def _migrate_v1(c: sqlite3.Connection) -> None:
    """Version 1 stored any class name. Samples whose name breaks today's rule move to
    ``quarantined`` (kept, never served) so they cannot re-add the class; the other names
    become accepted classes (they were trained on already)."""
    for row_id, label in c.execute("SELECT id, label FROM labelled").fetchall():
        try:
            ok = normalise_class(label) == label
            why = "name is not in canonical form"
        except InvalidClassName as exc:
            ok, why = False, exc.reason
        if not ok:
            c.execute(f"INSERT INTO quarantined SELECT {SAMPLE_COLUMNS}, ? FROM labelled "
                      "WHERE id = ?", (f"schema v1 migration: {why}", row_id))
            c.execute("DELETE FROM labelled WHERE id = ?", (row_id,))
    c.execute("INSERT OR IGNORE INTO classes (name, reason) "
              "SELECT DISTINCT label, 'schema v1 migration' FROM labelled")
    c.execute("INSERT INTO schema_version VALUES (2)")


def _migrate_v2(c: sqlite3.Connection) -> None:
    """Version 2 stored whole frames only: add the region columns, NULL in the rows there are
    (they show the whole frame). Only missing columns are added: ``SCHEMA`` creates a table that
    an older file lacked (``held`` of a version-1 file) with them already."""
    for table in ("labelled", "held"):
        have = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
        for col in REGION_COLUMNS:
            if col not in have:
                c.execute(f"ALTER TABLE {table} ADD COLUMN {col} INTEGER")
    c.execute("INSERT INTO schema_version VALUES (3)")
