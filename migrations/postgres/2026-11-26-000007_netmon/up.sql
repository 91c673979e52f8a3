-- netMON: per HA VPS, who goes first when room is short and which TCP ports its service checks
-- try (comma-separated; an ICMP echo is always tried); per host, maintenance (never failed over
-- from, never placed on).
ALTER TABLE vpses ADD COLUMN ha_priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vpses ADD COLUMN check_ports TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN maintenance BOOLEAN NOT NULL DEFAULT FALSE;
