# The sandbox runner image (FMU_GATEWAY_SANDBOX=docker): a fresh container of it per run, or per
# tenant with its zygote forking the runs (FMU_GATEWAY_SANDBOX_REUSE).
# Built by deploy/images/build.sh from the repository root, offline, from .build/wheelhouse.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS venv
COPY .build/wheelhouse /wheels
COPY private-api/requirements.txt /requirements.txt
# Only what the runner imports, at the API's pinned versions.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels -c /requirements.txt \
      fmpy numpy \
 && /opt/venv/bin/pip uninstall -y -q pip setuptools

FROM ${BASE_IMAGE}
ARG RUNNER_DIGEST=unknown
COPY --from=venv /opt/venv /opt/venv
COPY private-api/app/sandbox/runner.py private-api/app/sandbox/zygote.py /runner/
# The backend compares this with the sha256 of its own runner.py + zygote.py: host and image speak one protocol.
LABEL org.fmu-gateway.runner-digest=${RUNNER_DIGEST}
USER 65534:65534
WORKDIR /tmp
CMD ["/opt/venv/bin/python", "-I", "-B", "/runner/runner.py", "--help"]
