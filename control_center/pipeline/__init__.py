"""The ingest process: sources (MQTT, serial links) → decode → monitor → store and
publish, wired by a thin service."""
