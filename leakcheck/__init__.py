"""leakcheck: audit the splits of an image dataset for cross-split near-twins by SSIM.

>>> import leakcheck
>>> result = leakcheck.audit({"train": "data/train", "valid": "data/valid"}, threshold=0.9)
>>> result.exit_code  # 0 clean, 1 leaks found
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("leakcheck-images")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

from leakcheck.audit import AuditResult, audit  # noqa: E402
from leakcheck.settings import Settings  # noqa: E402

__all__ = ["AuditResult", "Settings", "__version__", "audit"]
