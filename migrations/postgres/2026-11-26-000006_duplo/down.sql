DROP TABLE duplo_points;
ALTER TABLE vpses DROP COLUMN duplo_enabled;
