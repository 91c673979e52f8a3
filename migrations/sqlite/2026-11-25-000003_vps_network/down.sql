ALTER TABLE hosts DROP COLUMN vps_gateway;
ALTER TABLE hosts DROP COLUMN vps_prefix_len;
ALTER TABLE hosts DROP COLUMN vps_bridge;
