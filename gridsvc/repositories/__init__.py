"""Repositories: the SQL. Each takes a Session and only flushes; services own the transaction."""
