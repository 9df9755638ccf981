-- popbridge's first schema (SQLite). Times are microseconds since the Unix
-- epoch (UTC); 0 means "not set". Forward-only: there is no Down.

-- +goose Up

-- OAuth2: one row per enrolled mailbox; sealed_grant is opaque (oauth/),
-- version is the compare-and-swap counter.
CREATE TABLE mailboxes (
    mailbox      TEXT    NOT NULL PRIMARY KEY,
    provider     TEXT    NOT NULL DEFAULT '',
    state        TEXT    NOT NULL DEFAULT '',
    sealed_grant BLOB,
    version      INTEGER NOT NULL,
    updated_us   INTEGER NOT NULL
);

-- Device passwords: PHC hashes, one per (mailbox, device).
CREATE TABLE device_credentials (
    mailbox    TEXT    NOT NULL,
    device     TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    created_us INTEGER NOT NULL,
    PRIMARY KEY (mailbox, device)
);

-- UIDL continuity: the UIDL shown for a message, where the message is now,
-- and its fingerprint.
CREATE TABLE uidls (
    mailbox_key TEXT    NOT NULL,
    uidl        TEXT    NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    message_id  TEXT    NOT NULL,
    date        TEXT    NOT NULL,
    header_hash TEXT    NOT NULL,
    PRIMARY KEY (mailbox_key, uidl)
);
CREATE INDEX uidls_location ON uidls (mailbox_key, uidvalidity, uid);

-- Device ledger: the devices of a shared mailbox and their done marks.
CREATE TABLE devices (
    mailbox_key  TEXT    NOT NULL,
    device       TEXT    NOT NULL,
    last_seen_us INTEGER NOT NULL,
    PRIMARY KEY (mailbox_key, device)
);
CREATE TABLE done_marks (
    mailbox_key TEXT    NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    device      TEXT    NOT NULL,
    at_us       INTEGER NOT NULL,
    PRIMARY KEY (mailbox_key, uidvalidity, uid, device)
);

-- Deletion journal: written before a change is applied upstream.
CREATE TABLE journal (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time_us     INTEGER NOT NULL,
    user_name   TEXT    NOT NULL,
    device      TEXT    NOT NULL,
    client_addr TEXT    NOT NULL,
    session_id  TEXT    NOT NULL,
    mailbox     TEXT    NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    message_id  TEXT    NOT NULL,
    date        TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    policy      TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    detail      TEXT    NOT NULL
);
CREATE INDEX journal_user_time ON journal (user_name, time_us);
CREATE INDEX journal_time ON journal (time_us);

-- Restores from quarantine queued for the user's next login.
CREATE TABLE restores (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_name    TEXT    NOT NULL,
    since_us     INTEGER NOT NULL,
    message_id   TEXT    NOT NULL,
    journal_id   INTEGER NOT NULL,
    requested_us INTEGER NOT NULL,
    outcome      TEXT    NOT NULL,
    finished_us  INTEGER NOT NULL
);
CREATE INDEX restores_user_outcome ON restores (user_name, outcome);
