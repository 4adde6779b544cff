"""Everything about a method is on its class: lists of methods are derived, never written out."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from viewer.explain import DEFAULT_METHODS, METHODS, Method
from viewer.explain.registry import COSTS, default_methods, methods_costing, register, title_of


def test_the_default_set_is_the_classes_that_say_so():
    assert default_methods() == DEFAULT_METHODS
    assert set(DEFAULT_METHODS) == {
        "gradcam",
        "gradcam++",
        "guided-backprop",
        "guided-gradcam",
        "deconvnet",
        "lime",
    }
    assert set().union(*(methods_costing(cost) for cost in COSTS)) == set(METHODS)


def test_the_sampled_methods_declare_small_and_report_settings_that_they_accept():
    for method_id in methods_costing("sampled"):
        cls = METHODS[method_id]
        cls(**cls.quick)  # unknown parameters would raise
        cls(**cls.report)


@pytest.fixture
def throwaway():
    @register
    class Flat(Method):
        id = "test-flat"
        title = "Flat (test)"
        family = "perturbation"
        convention = "unit"
        reference = "a test"
        cost = "sampled"
        default = True
        caveat = "a constant map"
        quick: ClassVar[dict] = {"level": 0.5}

        @classmethod
        def defaults(cls) -> dict:
            return {"level": 1.0}

        def compute(self, ctx, targets):
            return torch.full((len(targets), 1, 4, 4), self.params["level"])

    yield Flat
    del METHODS["test-flat"]


def test_a_new_method_is_one_class(throwaway):
    assert METHODS["test-flat"] is throwaway and title_of("test-flat") == "Flat (test)"
    assert "test-flat" in default_methods() and "test-flat" in methods_costing("sampled")
    assert throwaway(**throwaway.quick).params == {"level": 0.5}
    with pytest.raises(ValueError, match="registered twice"):
        register(throwaway)
