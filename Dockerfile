# The image every seedserve pod runs (Ray head, Ray workers, manager).
# CPU build; for GPU worker groups base it on rayproject/ray:2.60.0-py311-cu128
# and install the matching CUDA torch wheel instead.
FROM rayproject/ray:2.60.0-py311-cpu
COPY --chown=ray:users pyproject.toml README.md /opt/seedserve/
COPY --chown=ray:users seedserve /opt/seedserve/seedserve
COPY --chown=ray:users configs /opt/seedserve/configs
ENV SEEDSERVE_WORKERS_CATALOG=/opt/seedserve/configs/workers.yaml
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir /opt/seedserve
