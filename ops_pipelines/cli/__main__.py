"""``python -m ops_pipelines.cli``, the same as the ``ops-pipelines`` script."""

from ops_pipelines.cli import main

main()
