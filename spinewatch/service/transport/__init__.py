"""Wire format and MQTT plumbing shared by the bridge, the ingest worker and the CLI."""
