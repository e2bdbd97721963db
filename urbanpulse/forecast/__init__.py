"""Forecasts that are honest about their skill (README, "Forecasts").

Pure parts: ``series`` (hourly series, baselines, features), ``model`` (quantile gradient
boosting), ``skill`` (MAE and skill against persistence), ``forecaster`` (training with a
per-horizon fallback to persistence), ``bins`` (time to 90 % full) and ``collection`` (a
truck's ordered list).  I/O: ``schema`` (the tables), ``store`` (queries), ``refresh`` (the job) and
``backtest`` (weeks of simulated data from the simulator models).
"""
