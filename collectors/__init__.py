"""Collectors: one module per protocol (snmp, modbus, mqtt), registered in ``REGISTRY``."""
