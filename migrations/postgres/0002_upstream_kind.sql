-- PostgreSQL twin of ../0002_upstream_kind.sql: upstreams stored under the kind `gateway` are
-- `upstream` now.
UPDATE registry SET kind = 'upstream' WHERE kind = 'gateway';
