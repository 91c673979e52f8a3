-- SERVERware initial schema (PostgreSQL). Keep in step with ../../sqlite: same tables, same columns.
-- Times are UTC.

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    last_login_at TIMESTAMP
);

CREATE TABLE sessions (
    id BIGSERIAL PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    ip TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE hosts (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    ssh_user TEXT NOT NULL,
    address TEXT NOT NULL,
    ssh_port INTEGER NOT NULL,
    host_key_fingerprint TEXT,
    host_key TEXT,
    status TEXT NOT NULL,
    capacity_memory_bytes BIGINT,
    capacity_cpus INTEGER,
    capacity_disk_bytes BIGINT,
    sample_interval_ms INTEGER NOT NULL DEFAULT 1000,
    duplo_interval_secs INTEGER NOT NULL DEFAULT 60,
    heartbeat_timeout_ms INTEGER NOT NULL DEFAULT 5000,
    agent_version TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP,
    UNIQUE (address, ssh_port)
);

CREATE TABLE templates (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    os TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    size_bytes BIGINT NOT NULL DEFAULT 0,
    storage_path TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE vpses (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    host_id BIGINT REFERENCES hosts(id) ON DELETE RESTRICT,
    template_id BIGINT REFERENCES templates(id) ON DELETE SET NULL,
    ipv4 TEXT NOT NULL UNIQUE,
    hostname TEXT NOT NULL,
    memory_limit_bytes BIGINT NOT NULL,
    cpu_shares INTEGER,
    cpu_limit_millis INTEGER,
    disk_limit_bytes BIGINT,
    autostart BOOLEAN NOT NULL DEFAULT TRUE,
    ha_enabled BOOLEAN NOT NULL DEFAULT FALSE,
    status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX vpses_host ON vpses(host_id);

CREATE TABLE tasks (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    progress_pct INTEGER NOT NULL DEFAULT 0,
    bytes_done BIGINT NOT NULL DEFAULT 0,
    bytes_total BIGINT,
    created_by TEXT NOT NULL,
    error TEXT,
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);
CREATE INDEX tasks_status ON tasks(status);

CREATE TABLE task_logs (
    id BIGSERIAL PRIMARY KEY,
    task_id BIGINT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    at TIMESTAMP NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX task_logs_task ON task_logs(task_id);

CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    message TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX events_created ON events(created_at);
CREATE INDEX events_kind_action ON events(kind, action);
