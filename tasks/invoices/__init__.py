"""The invoice store: one row per invoice, in the run's SQLite (default) database."""
