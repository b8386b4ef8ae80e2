"""Sign-in: who is behind a web request. Passwords (argon2id), one-time sign-in links and signed session
cookies; the web edge (bot/web/session.py) asks this wing, the factory builds it."""
