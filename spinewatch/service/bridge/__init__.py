"""The bridge process: sensor source -> posture tracker -> publisher with its disk outbox."""
