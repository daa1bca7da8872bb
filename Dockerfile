# Image of the source-telecmi Airbyte connector.
#
# Plain Dockerfile syntax (no heredocs) so that both `docker build .` and Debian bookworm's
# buildah 1.28 read it. BASE_IMAGE defaults to Airbyte's Python 3.11 connector base, the same
# image as `connectorBuildOptions.baseImage` in metadata.yaml; scripts/image_test.sh overrides it
# with a local stand-in where no registry can be reached.
ARG BASE_IMAGE=docker.io/airbyte/python-connector-base:4.0.2@sha256:9fdb1888c4264cf6fee473649ecb593f56f58e5d0096a87ee0b231777e2e3e73
FROM ${BASE_IMAGE}

# Install as root whatever user the base image ends with; the connector runs as `airbyte` below.
USER root
WORKDIR /airbyte/integration_code

# Only what the package needs: setup.py, the package (with its spec and schemas) and main.py.
COPY setup.py main.py ./
COPY source_telecmi ./source_telecmi
RUN pip install --no-cache-dir . \
    && rm -rf build source_telecmi.egg-info \
    && source-telecmi spec >/dev/null

# Recent bases already have the user `airbyte` (uid 1000); older ones and stand-ins may not.
RUN id -u airbyte >/dev/null 2>&1 || useradd --uid 1000 --create-home --shell /bin/bash airbyte

ENV AIRBYTE_ENTRYPOINT="source-telecmi"
ENTRYPOINT ["source-telecmi"]

LABEL io.airbyte.name=airbyte/source-telecmi
LABEL io.airbyte.version=0.4.0

USER airbyte
