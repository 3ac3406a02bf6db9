-- PostgreSQL twin of ../0003_registry_version.sql: a counter every write to the registry moves
-- (a statement trigger, so every writer counts, whatever instance it is): readers rebuild their
-- snapshot only when it moved. The row lock it takes also orders concurrent writers.
CREATE TABLE IF NOT EXISTS registry_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO registry_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE OR REPLACE FUNCTION mcpgw_registry_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE registry_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS registry_version_moved ON registry;
CREATE TRIGGER registry_version_moved AFTER INSERT OR UPDATE OR DELETE ON registry
    FOR EACH STATEMENT EXECUTE FUNCTION mcpgw_registry_moved();
