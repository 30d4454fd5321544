"""GATT profiles of supported sensors: UUIDs and pure packet decoders."""
