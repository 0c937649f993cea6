"""slacomp oracle: terms, evidence, KPI engine, reports, signing and submission."""
