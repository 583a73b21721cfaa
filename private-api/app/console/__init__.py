"""The web console: static pages served at ``/console`` that speak the public ``/v1`` API."""
