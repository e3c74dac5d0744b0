# The adapter image: every role (scp, process, submit, run) of the dicom-adapter CLI.
# It talks to an external Kafka (see compose.yaml), so it needs neither Java nor DCMTK.
#
#   docker build -t dicom-stream-adapter .
#   docker run --rm dicom-stream-adapter config check /etc/dicom-adapter/config.yaml

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY processors ./processors
# Wheels of the package and every dependency; the runtime stage installs only these.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A fixed non-root uid, and /data owned by it so a fresh named volume mounted there is
# writable (Docker copies the directory's ownership into an empty volume).
RUN groupadd --system --gid 10001 adapter \
 && useradd --system --uid 10001 --gid adapter --home-dir /var/lib/dicom-adapter \
      --create-home --shell /usr/sbin/nologin adapter \
 && mkdir -p /data /etc/dicom-adapter \
 && chown adapter:adapter /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels dicom-stream-adapter \
 && rm -rf /wheels
USER adapter
WORKDIR /var/lib/dicom-adapter
# 11112: DICOM C-STORE (scp.port); 8080: /healthz /readyz /metrics (http.port).
EXPOSE 11112 8080
ENTRYPOINT ["dicom-adapter"]
CMD ["--help"]
