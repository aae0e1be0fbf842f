"""Database access: table metadata, engines, migrations."""
