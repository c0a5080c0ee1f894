"""Training of the default condition-grading model (``make model``, ``inspectd train DIR``).

``generator`` (numpy + OpenCV) and ``evaluate`` (ONNX Runtime) import no torch, so the server
and the tests can use them without the ``train`` extra; ``train`` and ``export`` need it.
"""

from __future__ import annotations

__all__ = ["GRADES", "DAMAGES"]

from inference.training.generator import DAMAGES, GRADES
