"""Events out (issue 17): the outbox of events, webhooks and MQTT.

``services``: record events (called by ``processes.services`` at each change, in its transaction),
notice hosts falling silent and new image versions; ``webhooks``: webhook records, their outbound
safety and the delivery of events to them; ``mqtt``: the MQTT publisher; ``relay``: the process that
reads the outbox and drives both (``manage.py events_relay``); ``tasks``: the Celery delivery task.
The events themselves are defined in ``edgeproxy.contracts.events``.
"""
