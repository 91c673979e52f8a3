-- How a host connects its VPSes: the bridge their interfaces join, and their network.
ALTER TABLE hosts ADD COLUMN vps_bridge TEXT NOT NULL DEFAULT 'br0';
ALTER TABLE hosts ADD COLUMN vps_prefix_len INTEGER NOT NULL DEFAULT 24;
ALTER TABLE hosts ADD COLUMN vps_gateway TEXT;
