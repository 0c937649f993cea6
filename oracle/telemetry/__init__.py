"""Telemetry in from the protocols fleets speak (OCPP, OCPI, MQTT), mapped to evidence states and
written through the store's one ingest path (`oracle.telemetry.sink`)."""
