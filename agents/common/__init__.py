"""What every method shares: the algorithm registry and hyperparameters (``registry``), the training
harness (``training``), the evaluation protocol and seeds (``evaluation``), leaderboard entries and
their rendering (``leaderboard``), the search records of N2NCompress-v0 (``compression``), interference
measurement (``interference``), the studies' job runner (``jobs``) and reports (``reports``), feature
extractors (``torch_layers``) and the ``kd-gym`` command (``cli``)."""
