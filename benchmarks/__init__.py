"""The project's benchmark (`python benchmarks/bench.py`); its parts are modules here."""
