ALTER TABLE duplo_points DROP COLUMN unchanged_until;
