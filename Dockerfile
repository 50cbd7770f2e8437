# The worker and API image (docker-compose.yml runs it twice with different commands).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MDCO_VAR_DIR=/app/var

WORKDIR /app

# Only what pyproject.toml packages (no .venv, var/ or tests in the image).
COPY pyproject.toml config.py worker.py ./
COPY domain/ domain/
COPY workflows/ workflows/
COPY activities/ activities/
COPY store/ store/
COPY esign/ esign/
COPY api/ api/
COPY mdco_temporal/ mdco_temporal/
COPY starter/ starter/
COPY observability/ observability/

RUN pip install . \
    && useradd --system --home-dir /app --shell /usr/sbin/nologin mdco \
    && mkdir -p /app/var \
    && chown mdco /app/var

USER mdco
EXPOSE 8000
CMD ["python", "-m", "uvicorn", "api.app:app", "--host", "0.0.0.0", "--port", "8000"]
