"""The package's layout (README, "How it works"): the plain data at the root imports no stage, and
each stage imports only the stages above it in the README's table, so no two stages import each other."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dqa_mcu"
# top to bottom as in the README's table; the root's plain data and shared helpers first, the
# user-facing layer (api, cli, demo, export_report) last
LAYERS = ["plain", "frontends", "reference", "codegen", "quantize", "research", "device", "top"]
PLAIN = {"ir", "qmodel", "bitpack", "huffman", "targets", "npconv", "__version__"}
TOP = {"__init__", "api", "cli", "demo", "export_report"}


def layer_of(name: str) -> str:
    return "plain" if name in PLAIN else "top" if name in TOP else name


def imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dqa_mcu":
            parts = node.module.split(".")
            layers |= {layer_of(parts[1])} if len(parts) > 1 else {layer_of(a.name) for a in node.names}
    return layers


def test_every_stage_imports_only_the_stages_above_it():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        layer = parts[0] if len(parts) > 1 else layer_of(path.stem)
        assert layer in LAYERS, f"{path}: a stage the README's table does not name"
        wrong += [f"{path.relative_to(PACKAGE)} imports {other}" for other in imported_layers(path)
                  if LAYERS.index(other) > LAYERS.index(layer)]
    assert not wrong, "\n".join(wrong)
