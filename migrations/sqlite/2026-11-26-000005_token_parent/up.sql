-- A token made with another token: it never outlives it, and is revoked with it.
ALTER TABLE api_tokens ADD COLUMN parent_token_id INTEGER NULL;
