"""Channel and CRM connectors: thin adapters around the unified message model (bot.models).

A connector imports only bot.models and bot.connector; never rag, crm internals or the agent.
"""
