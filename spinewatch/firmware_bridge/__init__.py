"""Sensor side: BLE profiles and connection, replay and simulated sources."""
