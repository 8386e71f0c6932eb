"""The web dashboard (server-rendered pages at ``/``): see ``views.py``."""
