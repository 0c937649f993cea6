"""The oracle node's database: rows in (ingest), rows out (export) and what a period froze."""
