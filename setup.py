"""The compiled part of the install: collectors.snmp._fastber (the SNMP decoder's hot loop).

Everything else is in pyproject.toml. The extension is optional: without a C compiler or the
Python headers the install still succeeds and collectors/snmp/wire.py runs its pure-Python
decoder (the reference the extension is tested against).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "collectors.snmp._fastber",
            ["collectors/snmp/_fastber.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
