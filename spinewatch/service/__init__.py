"""Service side: wire format, MQTT publisher and ingest, storage, config, CLI."""
