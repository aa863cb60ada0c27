"""An edge install, simulated: TensorFlow (and what pulls it in) made unimportable."""

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx") or name.startswith("lrcn.models"):
            raise ImportError(f"{name} is blocked: the runtime must not need it")
sys.meta_path.insert(0, Block())
"""
