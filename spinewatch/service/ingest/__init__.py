"""The ingest worker: MQTT -> store, acknowledging each message after the store took it; its health endpoint."""
