"""The 0.1 module paths keep working for one release, each use warning with the new path."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from crowdlens import participation
from crowdlens.core import encoders, hub, metrics
from crowdlens.participation import labels

OLD_MODULES = ["models", "annotate", "encoders", "explore", "metrics", "plots", "config", "communities", "weibo",
               "replies", "mixture_lora", "llm_labels"]


@pytest.mark.parametrize("old, name, new", [
    ("models", "load_classifier", participation.load_classifier),
    ("models", "load_encoder", hub.load_encoder),
    ("encoders", "EncoderClassifier", encoders.EncoderClassifier),
    ("metrics", "weighted_f1", metrics.weighted_f1),
    ("annotate", "LABELS", labels.FIVE_CLASSES),
])
def test_an_old_path_returns_the_moved_object_with_a_deprecation_warning(old, name, new):
    module = importlib.import_module(f"crowdlens.{old}")
    with pytest.warns(DeprecationWarning, match=rf"crowdlens\.{old}\.{name} has moved to crowdlens\."):
        assert getattr(module, name) is new


def test_a_name_that_never_existed_is_an_attribute_error():
    import crowdlens.models

    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        crowdlens.models.no_such_thing  # noqa: B018


@pytest.mark.parametrize("old", OLD_MODULES)
def test_every_old_module_still_imports_and_forwards(old):
    module = importlib.import_module(f"crowdlens.{old}")
    assert callable(module.__getattr__) and "kept for one release" in module.__doc__


def test_python_dash_m_crowdlens_still_runs():
    result = subprocess.run([sys.executable, "-m", "crowdlens", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "book" in result.stdout and "run" in result.stdout
