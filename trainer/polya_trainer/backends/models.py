"""Which model each (arm, stage) starts from, and loading it the same way everywhere."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from polya_trainer.runtime.artifacts import is_complete
from polya_trainer.runtime.workspace import RunDir, Workspace
from polya_trainer.spec import ModelSpec, PolyaRunSpec, SpecError


class ModelError(RuntimeError):
    """A model or tokenizer cannot be loaded; the message names the model and why."""


def _load(what: str, name: str, fn: Any, **kw: Any) -> Any:
    try:
        return fn(name, **kw)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        hint = ""
        if Path(name).is_dir() and not (Path(name) / "config.json").exists():
            hint = " (the directory has no config.json: is it a Hugging Face model directory?)"
        raise ModelError(f"cannot load the {what} of spec.model.name={name!r}{hint}: "
                         f"{type(exc).__name__}: {str(exc)[:500]}") from exc


def checkpoint_model(spec: PolyaRunSpec, arm: str, checkpoint: str,
                     workdir: RunDir) -> str | None:
    """Model path for a checkpoint name (base, midtrain, rl) of an arm; None if not trained."""
    if checkpoint == "base" or (checkpoint == "midtrain" and arm == "vanilla"):
        return spec.model.name if checkpoint == "base" else None
    path = Workspace.of(workdir).model(arm, checkpoint)
    return str(path) if is_complete(path) else None


def rl_start_model(spec: PolyaRunSpec, arm: str, workdir: RunDir) -> str:
    """GRPO starts from the mid-trained model, or from the base model for the vanilla arm."""
    if arm == "vanilla":
        return spec.model.name
    path = Workspace.of(workdir).model(arm, "midtrain")
    if not is_complete(path):
        raise FileNotFoundError(f"mid-trained model for arm {arm!r} not found at {path}; "
                                "run the midtrain stage first")
    return str(path)


def hub_kwargs(model: ModelSpec, name: str) -> dict[str, Any]:
    """from_pretrained keyword arguments shared by models and tokenizers.

    The revision and GGUF file apply only to the base model, not to our own outputs.
    """
    kw: dict[str, Any] = {"trust_remote_code": model.trust_remote_code}
    if name == model.name:
        if model.revision:
            kw["revision"] = model.revision
        if model.gguf_file:
            kw["gguf_file"] = model.gguf_file
    token = os.environ.get("HF_TOKEN")  # set from the hubTokenSecret via secretKeyRef
    if token:
        kw["token"] = token
    return kw


def torch_dtype(model: ModelSpec) -> Any:
    import torch

    if model.dtype == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, model.dtype)


def load_tokenizer(model: ModelSpec, name: str | None = None) -> Any:
    from transformers import AutoTokenizer

    name = name or model.name
    tok = _load("tokenizer", name, AutoTokenizer.from_pretrained, **hub_kwargs(model, name))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(model: ModelSpec, name: str | None = None, device: str | None = None) -> Any:
    """AutoModelForCausalLM for `name` (default: the base model) with the spec's dtype."""
    from transformers import AutoModelForCausalLM

    name = name or model.name
    lm = _load("weights", name, AutoModelForCausalLM.from_pretrained,
               dtype=torch_dtype(model), **hub_kwargs(model, name))
    if getattr(lm.config, "quantization_config", None) is not None and model.gguf_file:
        # GGUF weights are dequantised on load; drop the marker so save_pretrained works.
        del lm.config.quantization_config
        lm.hf_quantizer = None
    if device:
        lm.to(device)
    return lm


def vllm_field(spec: PolyaRunSpec, stage: str) -> str | None:
    """The spec field through which `stage` asks for vLLM, or None when it does not."""
    if stage == "generate" and spec.stages.generate.backend == "vllm":
        return "spec.stages.generate.backend"
    if stage == "evaluate" and spec.stages.evaluate.backend == "vllm":
        return "spec.stages.evaluate.backend"
    if stage == "rl":
        explicit = spec.stages.rl.trainer_args.get("use_vllm")
        if explicit is not None:
            return "spec.stages.rl.trainerArgs.use_vllm" if explicit else None
        if spec.stages.generate.backend == "vllm":  # the run's statement of its engine
            return "spec.stages.generate.backend"
    return None


def require_engine(spec: PolyaRunSpec, stage: str) -> None:
    """Fail with a SpecError (exit code 2, reason InvalidConfig, not retried) when the stage
    asks for vLLM and vllm cannot be imported: never fall back to a slower engine silently."""
    field = vllm_field(spec, stage)
    if field is None:
        return
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install (missing CUDA libraries, ...)
        raise SpecError([(field, f"asks for vLLM, but vllm cannot be imported in this image "
                                 f"({type(exc).__name__}: {str(exc)[:300]}); use the GPU trainer "
                                 "image (requirements/trainer-gpu.txt), or choose the hf "
                                 "backend")]) from exc


DRIVER_REQUIREMENT = "the GPU image's CUDA 13 wheels need NVIDIA driver >= 580"


def cuda_found() -> str:
    """What this process can see of CUDA: torch's build, the driver, the visible devices and
    the error CUDA's initialisation gave, for a message that says why no GPU is usable."""
    import torch

    try:
        driver = Path("/proc/driver/nvidia/version").read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        driver = "no NVIDIA driver loaded (/proc/driver/nvidia/version absent)"
    try:
        torch.cuda.init()
        error = "none"
    except Exception as exc:  # torch raises RuntimeError or AssertionError
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return (f"torch {torch.__version__} built for CUDA {torch.version.cuda or 'none (CPU build)'}"
            f"; driver: {driver}; CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}; CUDA init error: {error}")


REQUIRE_CUDA_ENV = "POLYA_REQUIRE_CUDA"


def require_cuda(spec: PolyaRunSpec, stage: str) -> None:
    """Fail with a SpecError (exit code 2, reason InvalidConfig, not retried) when the stage
    was given GPUs but torch sees none: never train silently on the CPU in float32 for days.

    The operator sets ``POLYA_REQUIRE_CUDA=1`` in the Job of every stage with
    ``resources.gpus > 0`` (operator/polya_operator/resources.py). A local ``polya run`` is
    on the CPU by choice and does not check, unless the variable is set there too."""
    gpus = getattr(spec.stages, stage).resources.gpus
    if gpus == 0 or os.environ.get(REQUIRE_CUDA_ENV) != "1":
        return
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return
    raise SpecError([(f"spec.stages.{stage}.resources.gpus",
                      f"asks for {gpus} GPU(s), but no CUDA device is usable here "
                      f"({cuda_found()}); {DRIVER_REQUIREMENT}")])
