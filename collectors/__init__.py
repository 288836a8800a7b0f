"""The built-in protocol plugins, one package each (``snmp``, ``modbus``, ``mqtt``), and the
built-in device profiles (``profiles/*.yaml``, data).

Each package holds its collector, codec, options schema (``options.py``), profile schema
(``profile.py``), ``sample.yaml`` and ``README.md``, and exposes ``plugin`` (a
:class:`dcim.protocols.ProtocolPlugin`), registered in pyproject's
``[project.entry-points."dcim.protocols"]``. The core knows them only through that registry.
"""
