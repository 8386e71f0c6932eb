"""What the control plane and the edge agree on, in plain Python: names, statuses, task messages, errors.

The bottom layer (docs/development.md): nothing here imports Django, Celery or any other package
of the project, so every other layer may import it, and a rule defined here is defined once.

* ``names``: the camera name rule and the image reference rules;
* ``statuses``: camera, operation and desired states, and the "offline" rule;
* ``tasks``: the queues and one typed message per task between control plane and edge;
* ``errors``: domain errors without HTTP codes (each interface maps them to its own answer).
"""
