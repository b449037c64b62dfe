"""shards stage."""

# Load the run config first: it imports this package's config module, which needs
# tokenmill.config.require (importing the stage config first would be circular).
import tokenmill.config  # noqa: F401
