# An S3 API for a single-host deployment without one: moto's server, in memory.
# Builds offline like the other images: pip installs only from the wheelhouse (`make build IMAGES=s3`
# adds moto[server] to it), on any BASE_IMAGE with Python 3.11+ and its venv module.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG WHEELHOUSE=.build/wheelhouse
COPY ${WHEELHOUSE} /tmp/wheelhouse
# A venv: a Debian base's own Python refuses pip installs into the system (PEP 668).
RUN python3 -m venv /opt/moto \
    && /opt/moto/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse "moto[server]" \
    && rm -rf /tmp/wheelhouse \
    && useradd --system --no-create-home moto
USER moto
EXPOSE 5000
ENTRYPOINT ["/opt/moto/bin/moto_server", "--host", "0.0.0.0", "--port", "5000"]
