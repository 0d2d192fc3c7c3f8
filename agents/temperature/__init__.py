"""Reference temperature policies for TemperatureKD-v0 that no RL trains: constants, global schedules,
fixed maps (``policies.py``), CTKD's temperature learned inside the episode (``ctkd.py``), the named
registry of them (``specs.py``) and the black-box search of their parameters on validation (``search.py``)."""
