"""Training checkpoints: model and Adam state in safetensors, loop state in JSON.

``checkpoint.safetensors`` holds ``model.<name>`` tensors and, unless ``compact``, the Adam
moments ``optim.<i>.exp_avg`` / ``exp_avg_sq``; ``checkpoint.json`` the loop state (epoch,
batch, history...) with the Adam step counts and the learning rate. Both are written to a
temporary file and renamed, so a run killed at any moment leaves the last complete pair.
Shared by the predictor's and the autoencoders' training.
"""
from __future__ import annotations

import json

import torch

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(folder, model, opt, state, compact):
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    steps = {}
    if not compact:
        for i, p in enumerate(opt.param_groups[0]["params"]):
            st = opt.state.get(p)
            if st:
                tensors[f"optim.{i}.exp_avg"] = st["exp_avg"].cpu().contiguous()
                tensors[f"optim.{i}.exp_avg_sq"] = st["exp_avg_sq"].cpu().contiguous()
                steps[str(i)] = float(st["step"])
    state = dict(state, optim_steps=steps, compact=bool(compact),
                 lr=opt.param_groups[0]["lr"])
    tmp = folder / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(folder / "checkpoint.safetensors")
    tmpj = folder / "checkpoint.json.tmp"
    tmpj.write_text(json.dumps(state, indent=1))
    tmpj.replace(folder / "checkpoint.json")


def load_checkpoint(folder, model, opt):
    from safetensors.torch import load_file

    state = json.loads((folder / "checkpoint.json").read_text())
    tensors = load_file(str(folder / "checkpoint.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    params = opt.param_groups[0]["params"]
    for i, p in enumerate(params):
        if f"optim.{i}.exp_avg" in tensors:
            opt.state[p] = {"step": torch.tensor(state["optim_steps"][str(i)]),
                            "exp_avg": tensors[f"optim.{i}.exp_avg"].to(p.device),
                            "exp_avg_sq": tensors[f"optim.{i}.exp_avg_sq"].to(p.device)}
    if "lr" in state:  # (written by save_checkpoint; kept as it is otherwise)
        for group in opt.param_groups:
            group["lr"] = state["lr"]
    return state
