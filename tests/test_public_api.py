"""The public surface is exactly ``polydiff.__all__``; the stdlib ``platform`` is not shadowed."""
from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import polydiff

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {
    "AdaLayerNorm", "AutoregressiveCorruption", "Bounded", "BridgeCorruption", "CompositeCorruption",
    "CosineMasking", "LinearMasking", "LoadedRun", "load_run", "train", "sample_run", "evaluate_run",
    "LogLinearMasking", "MaskedCorruption", "MaskingSchedule", "ReflectedCorruption", "UniformCorruption", "reflect",
    "DiTBlock", "CheckpointError", "ConfigError", "Continuous", "Corrupted", "Corruption",
    "CorruptionSpec", "DataMissingError", "DenoiserSpec", "Discrete", "DuplicateNameError", "EDM",
    "EDMPreconditioning", "Experiment", "FieldsDataset", "Flow", "FourierEmbedding", "GaussianCorruption",
    "IncompatibleSpaceError", "MLPDenoiser", "Metric", "MetricSpec", "Modality", "ModalitySpec",
    "NonFiniteLossError", "PluginLoadError", "PluginManager", "PolydiffError", "PredictFn", "Prediction",
    "Registry", "SampleOutput", "Sampler", "SamplerSpec", "Schedule", "ScheduleSpec", "ScheduleValues",
    "SinusoidalEmbedding", "Space", "State", "UnknownComponentError", "VE", "VPCosine", "VPLinear",
    "__version__", "append_dims", "batch_size", "build_experiment", "cache_dir", "config_from_dict", "eps_to_x0",
    "flow_velocity_to_x0", "hookimpl", "load_config", "make_plugin_manager", "stack_items", "v_to_x0", "validate_state", "write_atomic",
    "x0_to_eps", "x0_to_flow_velocity", "x0_to_v",
}


def test_all_is_pinned():
    assert set(polydiff.__all__) == PUBLIC, (
        f"added: {sorted(set(polydiff.__all__) - PUBLIC)}, removed: {sorted(PUBLIC - set(polydiff.__all__))}; "
        "change __all__ only together with docs and this list")
    assert len(polydiff.__all__) == len(set(polydiff.__all__))


def test_every_public_name_exists():
    missing = [name for name in polydiff.__all__ if not hasattr(polydiff, name)]
    assert not missing, missing


def test_testing_kit_api():
    import polydiff.testing as testing

    for name in ("PluginConformance", "check_plugin", "iter_checks", "TINY"):
        assert name in testing.__all__


def test_stdlib_platform_is_not_shadowed():
    import platform

    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(platform.__file__).resolve().parent == stdlib
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert callable(platform.system) and "platform" in sys.modules
