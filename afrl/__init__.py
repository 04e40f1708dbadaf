"""afrl: Answer First, Reason Later search relevance.

This package is the shared contract between training, export and serving:
the prompt, the label set, the score math, the artifact manifest and the CLI.
It never imports torch at module level so the serving image stays small.
"""

__version__ = "0.1.0"
