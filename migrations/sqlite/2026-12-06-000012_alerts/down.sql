DROP TABLE alert_messages;
DROP TABLE alert_incidents;
DROP TABLE alert_targets;
