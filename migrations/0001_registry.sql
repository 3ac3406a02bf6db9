-- The registry: one table for every kind of record (tools, resources, prompts, servers).
-- `key` is unique within a kind: a name, or a resource's URI or URI template.
CREATE TABLE IF NOT EXISTS registry (
    kind        TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, key)
);
