"""Database layer: engine, models and the embedded PostGIS lifecycle."""
