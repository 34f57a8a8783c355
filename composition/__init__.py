"""The one composition root: the four targets built from settings and adapters, for
`main.py` (a deployment) and `hookyard.stack` (the local stack) alike."""
