"""Retrieval: ingestion, chunking, embeddings, the hybrid index and permission-trimmed search.

Knows no platform, no channel and no CRM: must never import bot, connectors or crm.
"""
