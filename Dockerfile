# The image every seedserve pod runs (Ray head, Ray workers, manager).
# CPU build; for GPU worker groups base it on rayproject/ray:2.60.0-py311-cu128
# and install the matching CUDA torch wheel instead.
FROM rayproject/ray:2.60.0-py311-cpu
# bubblewrap: the sandbox of user code (test-loads in the manager, handler
# packages in model replicas). Unprivileged, it needs user namespaces in the
# pod (Kubernetes' default on most nodes); without a writable cgroup it
# bounds memory and processes with rlimits instead.
USER root
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends bubblewrap util-linux \
 && rm -rf /var/lib/apt/lists/*
USER ray
COPY --chown=ray:users pyproject.toml README.md /opt/seedserve/
COPY --chown=ray:users seedserve /opt/seedserve/seedserve
COPY --chown=ray:users configs /opt/seedserve/configs
ENV SEEDSERVE_WORKERS_CATALOG=/opt/seedserve/configs/workers.yaml
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir "/opt/seedserve[server]"
