"""The import contract: the folders are layers, and a module imports only from the layers below its own.

bot → workers → service → answer → (ingest pipeline) → read → search → index → ingest; `passages`, `config` and
`prompts` at the bottom. Nothing in the product imports the bot, the eval harness or training code, and
the bot imports no storage or model library (its handlers call services).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "config", "newsbot", "prompts", "retrieval")

# Lowest first. The longest matching prefix names a module's layer.
LAYERS: dict[str, int] = {
    "config": 0,
    "prompts": 0,
    "retrieval.passages": 1,  # Query and Passage: the values that travel up the pipeline
    "retrieval.ingest": 1,  # loaders, cleaning, chunking
    "retrieval.index": 2,
    "retrieval.search": 3,
    "retrieval.read": 4,  # the reader (scores question-sentence pairs), between search and answer
    "retrieval.ingest.pipeline": 5,  # writes the index from the loaders (and may ask the reader at ingest)
    "retrieval.answer": 6,
    "retrieval.service": 7,
    "retrieval.workers": 8,  # services in worker processes
    "retrieval.remote": 8,  # services in worker services, over HTTP
    "bot": 9,
    "retrieval.evaluation": 9,
    "newsbot": 10,
}
PRODUCT_MAY_NOT_IMPORT = ("bot", "retrieval.evaluation")
BOT_MAY_NOT_IMPORT = ("chromadb", "sentence_transformers", "torch", "transformers", "langchain", "bm25s")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top, inside functions and under TYPE_CHECKING alike."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            found.add(node.module or "")
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _layer(module: str) -> tuple[str, int] | None:
    matches = [prefix for prefix in LAYERS if _within(module, prefix)]
    if not matches:
        return None
    prefix = max(matches, key=len)
    return prefix, LAYERS[prefix]


MODULES = _modules()


def test_the_walk_finds_the_pipeline() -> None:
    for module in (
        "bot.app",
        "retrieval.service",
        "retrieval.answer.answerer",
        "retrieval.search.hybrid",
        "retrieval.index.store",
        "retrieval.ingest.pipeline",
        "retrieval.evaluation.harness",
    ):
        assert module in MODULES
    assert "retrieval.index.store" in _imports(MODULES["retrieval.search.hybrid"])


def layer_violations(module: str, imports: set[str]) -> list[str]:
    """The imports of `module` that reach up (or sideways into another package of the same layer)."""
    own = _layer(module)
    if own is None:
        return [f"{module} is in no layer: add its folder to LAYERS"]
    own_prefix, own_level = own
    found = []
    for imported in sorted(imports):
        target = _layer(imported)
        if target is None or target[0] == own_prefix:
            continue  # the standard library, a third-party package, or its own package
        if target[1] >= own_level:
            found.append(f"{module} (layer {own_prefix}) imports {imported} (layer {target[0]})")
    return found


def test_imports_go_down_the_layers() -> None:
    violations = [v for m, path in MODULES.items() if m != "retrieval" for v in layer_violations(m, _imports(path))]
    assert violations == []


def test_the_contract_catches_a_wrong_way_import() -> None:
    assert layer_violations("retrieval.index.store", {"retrieval.search.hybrid"})
    assert layer_violations("retrieval.ingest.articles", {"retrieval.ingest.pipeline"})
    assert layer_violations("bot.app", {"retrieval.evaluation.harness"})  # same level, other package
    assert not layer_violations("retrieval.answer.extractive", {"retrieval.index.keywords", "numpy"})


def test_the_product_imports_no_bot_eval_or_training_code() -> None:
    violations = []
    for module, path in MODULES.items():
        if _within(module, "newsbot"):
            continue
        for imported in _imports(path):
            if "training" in imported.split(".") and not _within(module, "retrieval.evaluation"):
                violations.append((module, imported))
            for banned in PRODUCT_MAY_NOT_IMPORT:
                if _within(imported, banned) and not _within(module, banned):
                    violations.append((module, imported))
    assert violations == []


def test_the_bot_uses_no_storage_or_model_library() -> None:
    violations = [
        (module, imported)
        for module, path in MODULES.items()
        if _within(module, "bot")
        for imported in _imports(path)
        if any(_within(imported, banned) for banned in BOT_MAY_NOT_IMPORT)
    ]
    assert violations == []
