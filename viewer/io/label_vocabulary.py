"""Matching the labels of an annotation file to a model's labels.

Public data sets name the same finding differently (NIH ``Infiltrate`` in its boxes and
``Infiltration`` in its labels, CheXpert ``Pleural Effusion``, VinDr-CXR ``Pleural effusion``,
RSNA ``Lung Opacity``). Names are compared after folding case and punctuation, then through the
synonym groups of ``resources/labels/vocabularies.toml``, then through a model's own aliases.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache

from viewer.resources import resource_path

_NOT_WORD = re.compile(r"[^0-9a-z]+")


def fold(label: str) -> str:
    """``label`` with case, punctuation and spacing folded: ``"Pleural_Thickening"`` ->
    ``"pleural thickening"``."""
    return _NOT_WORD.sub(" ", label.casefold()).strip()


@dataclass(frozen=True)
class Vocabulary:
    groups: dict[str, str]  # folded name -> group id
    broader: dict[str, tuple[str, ...]]  # folded name -> folded names it covers


@cache
def vocabulary() -> Vocabulary:
    with open(resource_path("labels", "vocabularies.toml"), "rb") as f:
        data = tomllib.load(f)
    groups = {}
    for group, names in data.get("synonyms", {}).items():
        for name in [group, *names]:
            groups[fold(name)] = group
    broader = {fold(k): tuple(fold(v) for v in vs) for k, vs in data.get("broader", {}).items()}
    return Vocabulary(groups, broader)


@dataclass(frozen=True)
class LabelMatcher:
    """Which of a model's ``labels`` an annotation label stands for."""

    labels: tuple[str, ...]
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # model label -> names

    def match(self, annotation_label: str) -> tuple[str, ...]:
        """The model labels ``annotation_label`` annotates (none, one, or several for a broader
        name such as ``Nodule/Mass``)."""
        words = vocabulary()
        name = fold(annotation_label)
        names = words.broader.get(name, (name,))
        return tuple(label for label in self.labels if any(self._same(label, n, words) for n in names))

    def _same(self, label: str, name: str, words: Vocabulary) -> bool:
        own = fold(label)
        if own == name or name in (fold(a) for a in self.aliases.get(label, ())):
            return True
        group = words.groups.get(own)
        return group is not None and words.groups.get(name) == group

    def matched(self, annotation_labels: Iterable[str], label: str) -> tuple[str, ...]:
        """The annotation labels that count for model ``label``."""
        return tuple(a for a in annotation_labels if label in self.match(a))

    def unmatched(self, annotation_labels: Iterable[str]) -> tuple[str, ...]:
        """Annotation labels that stand for none of the model's labels."""
        return tuple(a for a in annotation_labels if not self.match(a) and fold(a) != "no finding")

    def unmatched_reason(self, annotation_labels: Iterable[str]) -> str | None:
        """What to tell the user about annotation labels that stand for none of the model's
        labels (None when all of them count)."""
        unmatched = self.unmatched(annotation_labels)
        if not unmatched:
            return None
        return (
            f"labels {', '.join(unmatched)} match none of the model's labels ({', '.join(self.labels)}); "
            "add them to the manifest's [label_aliases] if they mean one"
        )


__all__ = ["LabelMatcher", "fold", "vocabulary"]
