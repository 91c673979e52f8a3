DROP INDEX vpses_id_base;
ALTER TABLE vpses DROP COLUMN id_base;
ALTER TABLE vpses DROP COLUMN privileged;
ALTER TABLE api_tokens DROP COLUMN parent_token_id;
