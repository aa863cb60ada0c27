"""The doctests of models/ need TensorFlow (pip install -e ".[train]"); without it they are not collected."""
import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("tensorflow") else ["*.py"]
