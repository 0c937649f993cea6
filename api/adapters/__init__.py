"""The API's only doors to the oracle, one per concern: `terms` (parse, hash, periods, the terms
registry), `evidence` (database, ingest, export, bundles), `chain` (the chain view and the one write)
and `engine` (month to date, burn series, forecast). Nothing else in api/ imports `oracle`."""
