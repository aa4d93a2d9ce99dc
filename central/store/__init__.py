"""The endpoint's store: SQLAlchemy Core tables, migrations and the queries the API runs.

Every function takes a `Database` and is called from request worker threads or CLI commands.
"""
