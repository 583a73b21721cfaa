"""The project's own test FMUs, built from C sources at test time (see ``build.py``)."""
