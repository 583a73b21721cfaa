# An S3 API for a single-host deployment without one: moto's server, in memory.
# Builds offline like the other images: `pip install` only from the wheelhouse (make build fills it,
# moto[server] included), on any BASE_IMAGE with Python 3.11+.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG WHEELHOUSE=build/wheelhouse
COPY ${WHEELHOUSE} /tmp/wheelhouse
RUN python3 -m pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse "moto[server]" \
    && rm -rf /tmp/wheelhouse
RUN useradd --system --no-create-home moto
USER moto
EXPOSE 5000
ENTRYPOINT ["moto_server", "--host", "0.0.0.0", "--port", "5000"]
