"""slacomp API service (FastAPI)."""
