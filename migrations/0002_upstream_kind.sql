-- Upstreams were stored under the kind `gateway` (the ContextForge word, kept as the REST path
-- `/gateways`); they are `upstream` now, the name the code and errors use.
UPDATE registry SET kind = 'upstream' WHERE kind = 'gateway';
