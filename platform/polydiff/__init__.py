"""polydiff: one diffusion core, many domains.

This module is the public API: plugins import only the names in ``__all__`` (and
``polydiff.testing`` in their tests). Time convention: t in [0, 1], t = 0 is data,
t = 1 is the prior. A State is a mapping field name -> tensor, batch first.
"""
from __future__ import annotations

from polydiff.config import config_from_dict, load_config
from polydiff.corruptions.autoregressive import AutoregressiveCorruption
from polydiff.corruptions import (BridgeCorruption, CompositeCorruption, Corrupted, Corruption, GaussianCorruption,
                                  MaskedCorruption, Prediction, ReflectedCorruption, UniformCorruption, append_dims,
                                  eps_to_x0, flow_velocity_to_x0, reflect, v_to_x0, x0_to_eps, x0_to_flow_velocity,
                                  x0_to_v)
from polydiff.data import FieldsDataset, stack_items
from polydiff.denoisers import (AdaLayerNorm, DiTBlock, EDMPreconditioning, FourierEmbedding, MLPDenoiser,
                                SinusoidalEmbedding)
from polydiff.errors import (CheckpointError, ConfigError, DataMissingError, DuplicateNameError,
                             IncompatibleSpaceError, NonFiniteLossError, PluginLoadError, PolydiffError,
                             UnknownComponentError)
from polydiff.experiment import Experiment, build_experiment
from polydiff.files import cache_dir, write_atomic
from polydiff.hookspecs import hookimpl
from polydiff.plugins import PluginManager, Registry, make_plugin_manager
from polydiff.protocols import Metric, Modality, PredictFn, Sampler
from polydiff.samplers.common import SampleOutput
from polydiff.schedules import (EDM, VE, CosineMasking, Flow, LinearMasking, LogLinearMasking, MaskingSchedule,
                                Schedule, ScheduleValues, VPCosine, VPLinear)
from polydiff.spaces import Bounded, Continuous, Discrete, Space, State, batch_size, validate_state
from polydiff.specs import (CorruptionSpec, DenoiserSpec, MetricSpec, ModalitySpec, SamplerSpec,
                            ScheduleSpec)
from polydiff.runs import evaluate_run, sample_run
from polydiff.training.checkpoint import LoadedRun, load_run
from polydiff.training.trainer import train

__version__ = "0.1.0"

__all__ = [
    "AdaLayerNorm", "AutoregressiveCorruption", "Bounded", "BridgeCorruption", "CompositeCorruption", "CosineMasking", "LinearMasking",
    "LogLinearMasking", "MaskedCorruption", "MaskingSchedule", "ReflectedCorruption", "UniformCorruption", "reflect",
    "DiTBlock", "CheckpointError", "ConfigError", "Continuous", "Corrupted", "Corruption",
    "CorruptionSpec", "DataMissingError", "DenoiserSpec", "Discrete", "DuplicateNameError", "EDM",
    "EDMPreconditioning", "Experiment", "FieldsDataset", "Flow", "FourierEmbedding", "GaussianCorruption",
    "IncompatibleSpaceError", "MLPDenoiser", "Metric", "MetricSpec", "Modality", "ModalitySpec",
    "NonFiniteLossError", "PluginLoadError", "PluginManager", "PolydiffError", "PredictFn", "Prediction",
    "Registry", "SampleOutput", "Sampler", "SamplerSpec", "Schedule", "ScheduleSpec", "ScheduleValues",
    "SinusoidalEmbedding", "Space", "State", "UnknownComponentError", "VE", "VPCosine", "VPLinear",
    "__version__", "append_dims", "batch_size", "build_experiment", "cache_dir", "config_from_dict", "eps_to_x0",
    "flow_velocity_to_x0", "hookimpl", "load_config", "load_run", "LoadedRun", "train", "sample_run", "evaluate_run", "make_plugin_manager", "stack_items", "v_to_x0", "validate_state", "write_atomic",
    "x0_to_eps", "x0_to_flow_velocity", "x0_to_v",
]
