"""Sensor side: BLE profiles and connection, replay and simulated sources.

| module | holds |
|---|---|
| ``source`` | ``ImuSource``, the async interface every source implements |
| ``profiles/`` | GATT profiles: UUIDs, pure decoders (``DecodeError`` reasons), packet builders |
| ``remap`` | the 24 sensor-to-body mounting alignments |
| ``timing`` | sample times from sequence numbers / device clock / arrival times; loss accounting |
| ``ble`` | ``BleSource``: scan, connect (bleak-retry-connector), reconnect with ``reconnect_delay_s``, status |
| ``bluez`` | why this machine cannot do BLE and the fix (the hints ``doctor`` and the bridge print) |
| ``ble_config`` | ``BleConfig``, the BLE bridge's typed settings |
| ``replay`` | recordings (CSV / .npz), ``record()``, ``ReplaySource`` |
| ``sim/`` | the simulated patient: scripted posture day, IMU synthesis, ``SimulatedPatient``, calibration patient |
"""
