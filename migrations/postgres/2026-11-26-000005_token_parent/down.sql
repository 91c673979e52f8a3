ALTER TABLE api_tokens DROP COLUMN parent_token_id;
