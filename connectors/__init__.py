"""The channel layer: the platform-neutral message model (message.py), the channel capabilities (channel.py),
the shared account loader (config.py), text rendering and splitting (text.py), and one package per platform.

Nothing here imports bot, rag or crm; a platform package imports only this core and itself.
"""
