"""Real third-party FMUs (OpenModelica FMI 2.0, Reference-FMUs FMI 3.0) fetched from pinned packages."""
