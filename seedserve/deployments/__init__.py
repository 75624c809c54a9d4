"""Ray Serve deployments: the master (health, metadata, reconciler) and the
per-model servers (auth, decode, infer, encode in one replica)."""

from seedserve.deployments.serve_config import deploy_config, master_application, model_application, model_applications

__all__ = ["deploy_config", "master_application", "model_application", "model_applications"]
