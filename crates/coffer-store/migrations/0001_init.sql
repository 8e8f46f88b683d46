-- Coffer schema v1. Only wrapped key material is ever written here.

-- Seal configuration, the wrapped root key and its check value.
CREATE TABLE meta (
    k TEXT PRIMARY KEY,
    v BLOB NOT NULL
);

-- Versions of each tenant (namespace) key, wrapped by the root key.
CREATE TABLE tenant_keys (
    namespace TEXT NOT NULL,
    version   INTEGER NOT NULL,
    created   INTEGER NOT NULL,
    wrapped   BLOB NOT NULL,
    PRIMARY KEY (namespace, version)
);

CREATE TABLE mounts (
    namespace   TEXT NOT NULL,
    path        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    description TEXT NOT NULL,
    accessor    TEXT NOT NULL,
    created     INTEGER NOT NULL,
    PRIMARY KEY (namespace, path)
);

-- Named transit keys: settings as JSON, no material.
CREATE TABLE transit_keys (
    namespace TEXT NOT NULL,
    mount     TEXT NOT NULL,
    name      TEXT NOT NULL,
    config    TEXT NOT NULL,
    PRIMARY KEY (namespace, mount, name)
);

-- One row per live key version, wrapped by the tenant key with AAD naming the row.
CREATE TABLE transit_key_versions (
    namespace TEXT NOT NULL,
    mount     TEXT NOT NULL,
    name      TEXT NOT NULL,
    version   INTEGER NOT NULL,
    -- which tenant key version wrapped this row
    kek_version INTEGER NOT NULL,
    wrapped   BLOB NOT NULL,
    PRIMARY KEY (namespace, mount, name, version)
);

-- Tokens are found by a keyed hash of their id; the id itself is never stored.
CREATE TABLE tokens (
    accessor     TEXT PRIMARY KEY,
    hash         BLOB NOT NULL UNIQUE,
    namespace    TEXT NOT NULL,
    parent       TEXT,
    policies     TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created      INTEGER NOT NULL,
    -- the TTL the token was created (or last renewed) with, in seconds; 0 = none
    ttl          INTEGER NOT NULL,
    expires      INTEGER,
    -- uses left; 0 = unlimited
    num_uses     INTEGER NOT NULL,
    renewable    INTEGER NOT NULL,
    meta         TEXT NOT NULL
);
CREATE INDEX tokens_parent ON tokens (parent);

CREATE TABLE policies (
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);
