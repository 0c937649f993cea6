"""Forecast of the period's outcome: the probability that each subject meets its target by
period end, a 90% interval of its final attainment and its expected credit, from a stated
statistical model fitted on the evidence before the forecast instant.

The model:

- A device alternates between *up* and *down spells* (runs of the terms' "down" class:
  faulted, and offline/unknown with ``missing_data: down``). Spells start as a Poisson
  process while the device is deployed, at a device rate λ_d with a two-level gamma prior
  (estate → site → device, empirical Bayes by the method of moments) updated with the
  device's spells and up-time in the fit window (default 90 days). Each Monte Carlo run
  draws λ_d from its posterior Gamma(k + n_d, k / m_site + T_d), so rate uncertainty is in
  the forecast.
- Spell durations are resampled from the completed spells of the fit window, separately
  for spells that start on a working day and on a weekend or holiday (site local time;
  holidays are given as `ForecastParams.holidays`). A spell still open at the forecast
  instant with age A lasts D − A more, D drawn from the durations longer than A (or
  A·Exp(1) when fewer than 5 are).
- ``site_availability`` also needs devices that are up but in use: the in-use share q of
  up time per (working/off day, local hour) is estimated from the fit window; given the
  number of down devices, a counted second is bad with probability P(Binomial(n_up, 1 − q)
  < min_available), integrated over the remaining counted time (its expectation: sessions
  are short against the horizon).
- ``site_max_down`` is bad while more than max_down devices are down; ``device_uptime``
  while the device is down. The remaining counted time (business hours, scheduled
  exclusions) is the KPI engine's own counted-time function.
- Ticket KPIs: future decided tickets ~ Poisson(rate · remaining time), each good with
  probability p ~ Beta(1 + good, 1 + bad) of the fit window (beta-binomial).

Final attainment per run = (good so far + remaining counted − simulated bad) ÷ (counted so
far + remaining counted), floored to basis points as the engine does."""
from oracle.engine.forecast.burn import BurnChart, burn_chart
from oracle.engine.forecast.model import FittedModel, ForecastParams, LocalTime, evidence_before, fit
from oracle.engine.forecast.report import FaultPriority, ForecastReport, SubjectForecast, forecast_period

__all__ = ["BurnChart", "FaultPriority", "FittedModel", "ForecastParams", "ForecastReport", "LocalTime",
           "SubjectForecast", "burn_chart", "evidence_before", "fit", "forecast_period"]
