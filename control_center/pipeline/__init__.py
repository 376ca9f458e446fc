"""The ingest process: sources (MQTT, serial links) → decode and store → alarms, with a
publisher to the broker and health reports, wired by a thin service (service.py)."""
