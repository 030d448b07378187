"""The applier's hot path as single SQL statements.

Creating or confirming thousands of projects writes an intent, a link, a snapshot and an audit row per
record; peewee's query building cost more CPU than SQLite's own work, and read-then-write pairs doubled
the statements. Each of these is one prepared statement (an upsert where a row may exist).
"""

from __future__ import annotations

__all__ = [
    "AUDIT",
    "BEGIN_INTENT",
    "FINISH_INTENT",
    "REMOTE_OF",
    "SAVE_SNAPSHOT",
    "SET_REMOTE",
    "UPSERT_LINK",
]

UPSERT_LINK = (
    'INSERT INTO "link" ("deal_id", "project_id", "message_id", "publish_status", "publish_error", '
    '"active", "inactive_reason", "si_state", "created_at", "updated_at") '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    'ON CONFLICT ("deal_id") DO UPDATE SET "project_id" = excluded."project_id", '
    '"message_id" = excluded."message_id", "publish_status" = excluded."publish_status", '
    '"publish_error" = excluded."publish_error", "active" = excluded."active", '
    '"inactive_reason" = excluded."inactive_reason", "si_state" = excluded."si_state", '
    '"updated_at" = excluded."updated_at"'
)
SAVE_SNAPSHOT = (
    'INSERT INTO "snapshot" ("deal_id", "zoho_hash", "zoho", "si", "pending", "updated_at", "updates", '
    '"held", "reported") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT ("deal_id") DO UPDATE SET '
    '"zoho_hash" = excluded."zoho_hash", "zoho" = excluded."zoho", "si" = excluded."si", '
    '"pending" = excluded."pending", "updated_at" = excluded."updated_at", '
    '"updates" = MAX("snapshot"."updates", excluded."updates"), "held" = excluded."held", '
    '"reported" = excluded."reported"'
)
# Parameters: key, kind, deal_id, project_id, payload, input_hash, cycle_id, created_at, updated_at. A
# re-armed intent keeps its remote ids, and its attempts while it is still pending.
BEGIN_INTENT = (
    'INSERT INTO "intent" ("key", "kind", "status", "deal_id", "project_id", "attempts", "input_hash", '
    '"payload", "remote", "cycle_id", "created_at", "updated_at") '
    "VALUES (?1, ?2, 'pending', ?3, ?4, 0, ?6, ?5, '{}', ?7, ?8, ?9) "
    'ON CONFLICT ("key") DO UPDATE SET "status" = \'pending\', "payload" = excluded."payload", '
    '"input_hash" = excluded."input_hash", "cycle_id" = excluded."cycle_id", '
    '"attempts" = CASE WHEN "intent"."status" = \'pending\' THEN "intent"."attempts" ELSE 0 END, '
    '"updated_at" = excluded."updated_at", "deal_id" = excluded."deal_id", '
    '"project_id" = excluded."project_id"'
)
REMOTE_OF = 'SELECT "remote" FROM "intent" WHERE "key" = ?'
SET_REMOTE = 'UPDATE "intent" SET "remote" = ?, "updated_at" = ? WHERE "key" = ?'
FINISH_INTENT = (
    'UPDATE "intent" SET "status" = \'done\', "last_error" = NULL, "next_retry_at" = NULL, '
    '"updated_at" = ? WHERE "key" = ?'
)
AUDIT = (
    'INSERT INTO "audit" ("at", "cycle_id", "deal_id", "project_id", "action", "field", "old", "new") '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
