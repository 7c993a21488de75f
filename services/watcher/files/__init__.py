"""The watcher's directory source: Kubernetes YAML files instead of a Kubernetes API.

``documents`` (pure) turns files into the objects a list would return, with uids and
resourceVersions assigned; ``source`` publishes them through the observe side's projections and
follows edits; ``status`` writes each Service's status back into ``status/`` beside them;
``service`` composes both into ``metalbus watcher --source-dir``.
"""
