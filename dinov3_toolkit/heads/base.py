"""The class every plug-in head's model derives from.

A head is split the way torchvision's detection models are:

* ``forward(features)`` is the network: backbone feature maps in, raw tensors
  out (what ONNX export and training see). It runs under the engine's autocast.
* ``postprocess(outputs, image, params)`` turns those tensors into a typed
  result (``dinov3_toolkit.results``) in the ORIGINAL image's pixels, on the
  device, copying only the small final result to the host.
* ``checkpoint_filter(state_dict)`` converts foreign key layouts before the
  strict load, or raises ``CheckpointError`` for a layout it recognises but
  cannot load (timm's ``checkpoint_filter_fn`` habit).

Batches are of one frame: the engine runs a camera stream frame by frame.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import Dinov3Error
from ..preprocess import PreparedImage


class HeadError(Dinov3Error, RuntimeError):
    """A head that cannot be loaded or failed on a frame; names the head and the file at fault."""

    def __init__(self, head: str, path: object, message: str) -> None:
        super().__init__(f"head {head!r} ({path}): {message}")
        self.head = head
        self.path = path
        self.message = message


class Head(nn.Module, metaclass=abc.ABCMeta):
    """Base of every head model. Subclasses set their layers in ``__init__`` from the manifest's ``args``.

    ``forward`` and ``postprocess`` are abstract: a head missing one cannot be
    built, so the loader reports it at start rather than on the first frame.
    """

    # A temporal head compares a frame with the previous one of its stream (optical flow): the engine
    # calls ``forward(features, previous)`` with both frames' maps, and ``first_result(reason)`` when
    # there is no usable previous frame (the stream's first, a gap, time going back); the loader refuses
    # a temporal head that does not define ``first_result``.
    temporal: ClassVar[bool] = False

    def __init__(self, class_names: Sequence[str] = ()) -> None:
        """``class_names``: the names in the manifest's ``classes`` file, which the loader passes to the
        constructor (the one way a head learns them); a head sizes its class outputs by their count."""
        super().__init__()
        self.class_names: tuple[str, ...] = tuple(class_names)

    @abc.abstractmethod
    def forward(self, features: list[torch.Tensor]) -> Any:
        """``features``: the maps of the manifest's ``layers``, each (1, C, h, w). Returns raw tensors.

        The maps are shared with every other head of the frame: read them, never change them in place.
        """

    @abc.abstractmethod
    def postprocess(self, outputs: Any, image: PreparedImage, params: Mapping[str, Any]) -> Any:
        """Raw ``outputs`` of ``forward`` -> a result in ``image.original_size`` pixels.

        ``params`` holds the head's current parameter values (manifest defaults
        plus the user's overrides), already validated.
        """

    @classmethod
    def checkpoint_filter(cls, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Convert a foreign layout to this model's keys; the default accepts the file as it is."""
        return state_dict
