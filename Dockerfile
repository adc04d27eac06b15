# One image for every passflow process: api, worker pools, simulator, migrations.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY passflow ./passflow
COPY cli ./cli
COPY worker ./worker
COPY models ./models
COPY migrations ./migrations
COPY api ./api
COPY simulator ./simulator
RUN pip install '.[postgres]' && useradd --system --uid 1000 passflow
USER passflow
CMD ["passflow", "--help"]
