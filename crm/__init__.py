"""The built-in CRM: reps and teams, accounts, contacts, opportunities, activities, tasks, stores.

Knows nothing of channels, the agent or retrieval: must never import bot, rag or connectors.
"""
