"""The manager: a Starlette app on MongoDB for the model registry."""

from seedserve.manager_app.app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]
