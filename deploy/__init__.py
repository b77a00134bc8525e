"""Deployment files. Only :mod:`deploy.loopback_cluster` is Python: the production topology on
one machine, a command (``python -m deploy.loopback_cluster``) that the deploy tests and
``bench/bench_cluster.py`` import. Not part of the installed distribution."""
