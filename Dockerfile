FROM python:3.11.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY dcim dcim
COPY collectors collectors
# A production install: no twin extra (numpy, amqtt are for `dcim demo` and the tests). The
# report extra (Typst, matplotlib with numpy, Babel) is in by default so that scheduled
# statements (`reports: heat: schedule:`) render in the stack; `--build-arg DCIM_EXTRAS=`
# builds the collector alone (without it the collector logs "scheduled statements off").
ARG DCIM_EXTRAS=report
# matplotlib's font cache: built here, kept on the volume (the root file system is read-only)
ENV MPLCONFIGDIR=/var/lib/dcim/.matplotlib
# gcc only while installing: it compiles the SNMP decoder's hot loop (collectors.snmp._fastber,
# see setup.py), then leaves the image; the import below fails the build if it was not built.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install --no-cache-dir ".${DCIM_EXTRAS:+[$DCIM_EXTRAS]}" \
 && python -c "import collectors.snmp._fastber" \
 && apt-get purge -y --auto-remove gcc libc6-dev && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 dcim \
 && useradd --system --uid 10001 --gid dcim --home-dir /var/lib/dcim --shell /usr/sbin/nologin dcim \
 && install -d -o dcim -g dcim -m 0750 /var/lib/dcim /var/lib/dcim/spool /var/lib/dcim/reports \
      /var/lib/dcim/.matplotlib \
 && if [ -n "$DCIM_EXTRAS" ]; then \
      su dcim -s /bin/sh -c 'python -c "import dcim.reports.charts"'; fi
# The spool (and the statements: /var/lib/dcim/reports) live on the named volume mounted
# here; a fresh volume takes this directory's owner (dcim), so the collector never runs as root.
VOLUME ["/var/lib/dcim"]
USER dcim
EXPOSE 9108
ENTRYPOINT []
CMD ["dcim", "run", "/etc/dcim/site.yaml"]
