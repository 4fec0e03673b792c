"""``--amp`` on any device: bf16 autocast on the CPU, mmengine's AMP on
GPUs."""
from contextlib import contextmanager
from typing import Iterator, Optional, Union

import torch
import torch.nn as nn
from mmengine.device import get_device
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from beit3_mm.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class MixedPrecisionOptimWrapper(AmpOptimWrapper):
    """Mixed precision training wherever the model runs.

    mmengine's :class:`AmpOptimWrapper` refuses the CPU. Here:

    - on the CPU, the forward runs under ``torch.autocast('cpu',
      dtype=torch.bfloat16)``: matrix products in bf16, the weights, their
      gradients and the optimizer state in fp32, no loss scaling (bf16 has
      fp32's exponent range). fp16 is refused (CPU autocast is bf16 only).
    - on GPUs (and NPU / MLU / MUSA), it is :class:`AmpOptimWrapper`:
      autocast to ``dtype`` with ``loss_scale`` (a no-op for bf16, needed
      for fp16).

    Args:
        dtype (str or torch.dtype): ``'auto'`` (bf16 on the CPU and on GPUs
            that support it, else fp16), ``'bfloat16'`` or ``'float16'``.
            Defaults to ``'auto'``.
        loss_scale (str, float or dict): the GPU loss scaler, see
            :class:`AmpOptimWrapper`. Defaults to ``'dynamic'``.
        use_fsdp (bool): ``ShardedGradScaler`` on GPUs (set by
            ``FSDPStrategy``). Defaults to False.
        **kwargs: for :class:`OptimWrapper`.
    """

    def __init__(self,
                 dtype: Union[str, torch.dtype] = 'auto',
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 use_fsdp: bool = False,
                 **kwargs):
        self.device_type = get_device()
        on_cpu = self.device_type == 'cpu'
        if dtype == 'auto':
            bf16 = on_cpu or (self.device_type == 'cuda'
                              and torch.cuda.is_bf16_supported())
            dtype = torch.bfloat16 if bf16 else torch.float16
        elif isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f'MixedPrecisionOptimWrapper: dtype must be '
                             f"'auto', 'bfloat16' or 'float16', got {dtype}")
        if not on_cpu:
            super().__init__(
                loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp,
                **kwargs)
            return
        if dtype != torch.bfloat16:
            raise ValueError(
                'MixedPrecisionOptimWrapper: fp16 autocast does not run on '
                "the CPU; use dtype='bfloat16' (or 'auto')")
        OptimWrapper.__init__(self, **kwargs)
        self.cast_dtype = dtype
        self.loss_scaler: Optional[object] = None
        self._scale_update_param = None

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.loss_scaler is None:
            OptimWrapper.backward(self, loss, **kwargs)
        else:
            super().backward(loss, **kwargs)

    def step(self, **kwargs) -> None:
        if self.loss_scaler is None:
            OptimWrapper.step(self, **kwargs)
        else:
            super().step(**kwargs)

    def state_dict(self) -> dict:
        if self.loss_scaler is None:
            return OptimWrapper.state_dict(self)
        return super().state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if self.loss_scaler is None:
            # a GPU run's scaler state does not apply here
            state_dict.pop('loss_scaler', None)
        super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Autocast to :attr:`cast_dtype` on the device of ``model``'s
        parameters (the base context skips gradient sync while
        accumulating)."""
        param = next(model.parameters(), None)
        device_type = self.device_type if param is None else \
            param.device.type
        with OptimWrapper.optim_context(self, model), torch.autocast(
                device_type=device_type, dtype=self.cast_dtype):
            yield
