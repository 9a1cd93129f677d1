"""What every section gets: torch, the effective config, the devices, the expectations."""

import dataclasses

from .checks import Expectations
from .progress import say


@dataclasses.dataclass
class RunContext:
    torch: object
    config: dict
    device_type: str  # "cuda" or "cpu"
    devices: list  # environment.devices(): index, name, compute capability, uuid
    workdir: str  # scratch directory for worker processes' results
    expectations: Expectations = None

    def __post_init__(self):
        if self.expectations is None:
            self.expectations = Expectations(self.config)

    @property
    def cuda(self):
        return self.device_type == "cuda"

    def device(self, index=0):
        return self.torch.device("cuda", index) if self.cuda else self.torch.device("cpu")

    def label(self, index):
        """How a device is named in check names: gpu0, gpu1, ... or cpu."""
        return "gpu%d" % index if self.cuda else "cpu"

    def say(self, section, message):
        say(section, message)
