FROM python:3.11.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dcim dcim
COPY collectors collectors
# A production install: no twin extra (numpy, amqtt are for `dcim demo` and the tests).
RUN pip install --no-cache-dir . \
 && groupadd --system --gid 10001 dcim \
 && useradd --system --uid 10001 --gid dcim --home-dir /var/lib/dcim --shell /usr/sbin/nologin dcim \
 && install -d -o dcim -g dcim -m 0750 /var/lib/dcim /var/lib/dcim/spool
# The spool lives on the named volume mounted here; a fresh volume takes this directory's
# owner (dcim), so the collector never runs as root.
VOLUME ["/var/lib/dcim"]
USER dcim
EXPOSE 9108
ENTRYPOINT []
CMD ["dcim", "run", "/etc/dcim/site.yaml"]
