"""Strict YAML for sweep specs: a key given twice is refused (naming both lines), and so is a document
whose anchors and aliases expand beyond a small size.

Why the size bound: PyYAML shares the object of an anchor between its aliases, so a "billion laughs"
document (``a: &a [x, x, ...]``, ``b: &b [*a, *a, ...]``, ...) loads in microseconds and a few kilobytes;
the harm comes later, from anything that walks the value as a tree: formatting it into an error message,
``copy.deepcopy``, ``json.dumps`` (measured before this check: 2-3 GB and a ``MemoryError`` after ~25 s for
a bomb under ``name:``). The composed node graph is therefore measured as a tree (every alias counted as
the copy it stands for) before any Python object is built. The shipped specs have a few hundred nodes.
"""

from __future__ import annotations

from typing import Any

import yaml

from adgan.errors import ConfigError, clip, short

MAX_EXPANDED_NODES = 10_000  # nodes of the document once every alias is expanded
MERGE_TAG = "tag:yaml.org,2002:merge"  # ``<<: *base`` merges a mapping: not a duplicate key


def load_yaml(text: str, path: str) -> Any:
    """Parse ``text`` (the file at ``path``) with PyYAML's safe loader after the checks above.

    Raises:
        ConfigError: Not YAML, a duplicate key, a recursive alias, or an expansion above
            ``MAX_EXPANDED_NODES`` (each message starts with ``path``).
    """
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_graph(root, path)
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_error(exc)}") from None
    finally:
        loader.dispose()


def _yaml_error(exc: yaml.YAMLError) -> str:
    """PyYAML's error as one line that starts with where it is in the file (PyYAML names the parsed
    string, "<unicode string>", not the file)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or not problem:
        return f"not valid YAML ({clip(str(exc), 600)})"
    text = f"line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {problem}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        text += f" ({context} started at line {context_mark.line + 1}, column {context_mark.column + 1})"
    return clip(text, 600)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_graph(root: yaml.Node, path: str) -> None:
    """Expanded size (each node counted once per path that reaches it) with a memo per node, so a graph
    of n nodes costs O(n) whatever it expands to; duplicate keys of every mapping on the way."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # nodes whose subtree is being measured: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            open_nodes.discard(id(node))
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > MAX_EXPANDED_NODES:
                raise ConfigError(
                    f"{path}: line {node.start_mark.line + 1}: the document expands to more than "
                    f"{MAX_EXPANDED_NODES:,} values through its anchors and aliases (a 'billion laughs' "
                    "document?); a sweep spec needs a few hundred"
                )
            if isinstance(node, yaml.MappingNode):
                _check_keys(node, path)
            sizes[id(node)] = size
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            raise ConfigError(f"{path}: line {node.start_mark.line + 1}: an alias refers to itself")
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _check_keys(node: yaml.MappingNode, path: str) -> None:
    """Refuse a key written twice in one mapping (PyYAML would keep the last one silently)."""
    seen: dict[tuple[str, str], yaml.ScalarNode] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == MERGE_TAG:
            continue
        if (key.tag, key.value) not in seen:
            seen[(key.tag, key.value)] = key
        else:
            first = seen[(key.tag, key.value)]
            raise ConfigError(
                f"{path}: line {key.start_mark.line + 1}: duplicate key {short(key.value)} (first at line "
                f"{first.start_mark.line + 1}); each key may appear once in a mapping"
            )
