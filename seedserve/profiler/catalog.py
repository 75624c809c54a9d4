"""The worker catalog (``configs/workers.yaml``): each worker type's peak
compute and bandwidth, memory, price, and the Ray resource its nodes advertise."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field

__all__ = ["Catalog", "SOURCE_CATALOG", "WorkerType", "load_catalog"]

#: ``configs/workers.yaml`` of the source tree: the catalog unless
#: Settings.workers_catalog names another (an installed package has no source
#: tree: the image sets SEEDSERVE_WORKERS_CATALOG).
SOURCE_CATALOG = Path(__file__).resolve().parents[2] / "configs" / "workers.yaml"


class WorkerType(BaseModel):
    name: str
    device: Literal["cpu", "gpu"]
    description: str
    peak_fp32: float = Field(gt=0, description="FLOP/s")
    peak_fp16: float = Field(gt=0, description="FLOP/s")
    bandwidth: float = Field(gt=0, description="bytes/s")
    memory: float = Field(gt=0, description="bytes")
    price_per_hour: float = Field(ge=0, description="USD")
    price_note: str | None = None
    as_of: str
    resource: str
    accelerator_type: str | None = Field(
        default=None, description="A GPU's type as Ray names it (ray.util.accelerators), e.g. 'H200'"
    )


class Efficiency(BaseModel):
    compute: float = Field(gt=0, le=1)
    bandwidth: float = Field(gt=0, le=1)


class Overhead(BaseModel):
    call: float
    op: float


class Defaults(BaseModel):
    uncalibrated_efficiency: Efficiency
    uncalibrated_overhead_s: dict[Literal["cpu", "gpu"], Overhead]


class Catalog(BaseModel):
    defaults: Defaults
    price_source: str
    types: list[WorkerType]

    def get(self, name: str) -> WorkerType:
        for worker in self.types:
            if worker.name == name:
                return worker
        raise KeyError(name)

    def gpu_types(self) -> dict[str, str | None]:
        """Each GPU worker type, with Ray's accelerator type when known."""
        return {worker.name: worker.accelerator_type for worker in self.types if worker.device == "gpu"}


def load_catalog(path: Path | None = None) -> Catalog:
    """The catalog at ``path``, else Settings.workers_catalog's, else the source tree's."""
    from seedserve.settings import Settings

    return _catalog_at(path or Settings().workers_catalog or SOURCE_CATALOG)


@cache
def _catalog_at(path: Path) -> Catalog:
    return Catalog.model_validate(yaml.safe_load(path.read_text()))
