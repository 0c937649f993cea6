"""The measuring engines: KPIs, error budgets, forecasts, alerts and the forecast's backtest. Pure, no I/O."""
