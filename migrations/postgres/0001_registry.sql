-- PostgreSQL twin of ../0001_registry.sql: one table for every kind of record (tools, resources,
-- prompts, servers, upstreams). `key` is unique within a kind: a name, or a resource's URI or
-- URI template. Bodies are JSON text, kept byte for byte as written.
CREATE TABLE IF NOT EXISTS registry (
    kind        TEXT   NOT NULL,
    id          TEXT   NOT NULL,
    key         TEXT   NOT NULL,
    body        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, key)
);
