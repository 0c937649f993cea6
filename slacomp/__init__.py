"""slacomp: the command line and the demo, above the oracle and the API."""
