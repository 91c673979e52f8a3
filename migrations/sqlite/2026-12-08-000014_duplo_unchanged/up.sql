-- netDUPLO: a cycle that finds nothing changed since a VPS's newest point lands no new point; it
-- records instead that the newest point still was the VPS's tree at that time (written in
-- batches, so it may be a little older than the controller's memory of it).
ALTER TABLE duplo_points ADD COLUMN unchanged_until TIMESTAMP;
