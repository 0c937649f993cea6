"""The evidence format: its schema, the one CSV reader and validator, loading, the commitment, frozen bundles."""
