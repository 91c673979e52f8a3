-- Alerts. A notification target: where messages go (`channel`: the JSON of shared's
-- AlertChannel), its secret (a webhook's HMAC key or an SMTP password; never shown by the API)
-- and the rules it wants (comma-separated names).
CREATE TABLE alert_targets (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    secret TEXT,
    rules TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL
);
-- An incident alerts were sent for, open until its cause has been gone a while; at most one
-- open per key.
CREATE TABLE alert_incidents (
    id BIGSERIAL PRIMARY KEY,
    incident_key TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    detail TEXT NOT NULL,
    opened_at TIMESTAMP NOT NULL,
    cleared_at TIMESTAMP
);
CREATE UNIQUE INDEX alert_incidents_open ON alert_incidents(incident_key) WHERE cleared_at IS NULL;
-- The outbox: each message to each target, written in the transaction that opened or cleared its
-- incident (or saw its event), delivered and retried by the sender. `dedupe` (open:<incident>,
-- clear:<incident>, event:<event id>) makes a message to a target exist once.
CREATE TABLE alert_messages (
    id BIGSERIAL PRIMARY KEY,
    target_id BIGINT NOT NULL REFERENCES alert_targets(id) ON DELETE CASCADE,
    dedupe TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP,
    failed_at TIMESTAMP,
    last_error TEXT,
    UNIQUE (target_id, dedupe)
);
CREATE INDEX alert_messages_due ON alert_messages(next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;
