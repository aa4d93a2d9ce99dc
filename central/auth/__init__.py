"""Console accounts: users and roles, argon2 password hashes, sessions with CSRF tokens, login throttling, audit log.

Every function takes a `Database`; called from request worker threads and CLI commands.
"""
