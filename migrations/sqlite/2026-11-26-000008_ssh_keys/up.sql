-- The SSH command line: public keys users log in with (OpenSSH's one-line form; the
-- fingerprint, SHA256:…, as ssh-keygen -l prints it, unique across users, so a key names one user).
CREATE TABLE user_ssh_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP
);
CREATE INDEX user_ssh_keys_user ON user_ssh_keys(user_id);
