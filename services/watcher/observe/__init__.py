"""The observe side of the watcher: list/watch Kubernetes, publish observed state to ``K8S``.

``translate`` (pure) turns raw objects into events; ``projection`` (pure) keeps what the stream
should hold per resource; ``reflector`` lists, reconciles with the stream and watches;
``resources`` says which resources are observed and runs them.
"""

from services.watcher.observe.reflector import ReflectorSettings
from services.watcher.observe.resources import Observers, build_observers

__all__ = ["Observers", "ReflectorSettings", "build_observers"]
