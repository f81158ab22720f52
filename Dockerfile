# syntax=docker/dockerfile:1
# msp-console: dependencies are installed from the lock (requirements/runtime.txt, every file
# hash-checked) in a build stage before the source is copied, so a source change does not
# reinstall them; the runtime image runs as a non-root user.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first: exactly the locked versions, pip and the build backend included.
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip install --require-hashes -r requirements/runtime.txt
# Then the project itself, built with the locked setuptools and adding nothing.
COPY pyproject.toml README.md ./
COPY server ./server
RUN pip install --no-deps --no-build-isolation . && pip check

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite:///data/msp-console.db
RUN useradd --create-home --uid 10001 console && mkdir /data && chown console /data
COPY --from=build /opt/venv /opt/venv
USER console
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
CMD ["msp-console", "serve", "--host", "0.0.0.0", "--port", "8000"]
