ALTER TABLE hosts DROP COLUMN maintenance;
ALTER TABLE vpses DROP COLUMN check_ports;
ALTER TABLE vpses DROP COLUMN ha_priority;
