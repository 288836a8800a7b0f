FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dcim dcim
COPY collectors collectors
RUN pip install --no-cache-dir .
ENTRYPOINT []
