FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dcim dcim
COPY collectors collectors
# A production install: no twin extra (numpy, amqtt are for `dcim demo` and the tests).
RUN pip install --no-cache-dir .
ENTRYPOINT []
