"""Storage: SQLAlchemy models, engine, queries and migrations (see docs/interfaces.md)."""
