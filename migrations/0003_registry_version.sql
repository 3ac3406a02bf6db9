-- A counter every write to the registry moves (triggers, so every writer counts, whatever
-- process or runtime it is): readers rebuild their snapshot only when it moved.
CREATE TABLE IF NOT EXISTS registry_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT OR IGNORE INTO registry_version (id, version) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS registry_version_insert AFTER INSERT ON registry
BEGIN
    UPDATE registry_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS registry_version_update AFTER UPDATE ON registry
BEGIN
    UPDATE registry_version SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS registry_version_delete AFTER DELETE ON registry
BEGIN
    UPDATE registry_version SET version = version + 1 WHERE id = 1;
END;
