"""Telemetry simulator internals: device profiles (`profiles`), local clocks (`clock`), the
vectorised estate and event model (`model`) and the writers (`output`). Use oracle.sim.simulate."""
