"""The Alembic migrations (env.py, versions/): a package so that a wheel carries them; bot.storage finds them here."""
