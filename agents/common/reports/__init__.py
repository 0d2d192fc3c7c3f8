"""The studies' reports: aggregation, summaries, tables and plots from finished runs, one module per study
(the studies' command lines, which runs to train in which order, are scripts/*_study.py and friends)."""
