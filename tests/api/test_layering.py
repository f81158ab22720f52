"""The API reads and writes only through the domain: every read there takes the viewer's scope,
so "every read is scoped" holds by structure. server/api may name models as types (annotations,
`strawberry.Private`), never query them."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from tortoise.models import Model

API = Path(__file__).resolve().parents[2] / "server" / "api"

# Methods that only an ORM object has (a query set, a model, a relation); `get` and `count`
# are left out as every dict and list has them: on a model class they are caught by name.
ORM_METHODS = frozenset(
    {
        "all",
        "annotate",
        "bulk_create",
        "bulk_update",
        "create",
        "delete",
        "exclude",
        "exists",
        "fetch_related",
        "filter",
        "first",
        "get_or_create",
        "get_or_none",
        "in_bulk",
        "prefetch_related",
        "raw",
        "refresh_from_db",
        "save",
        "select_for_update",
        "select_related",
        "update_or_create",
        "values_list",
    }
)
# Modules that reach the database without the domain.
FORBIDDEN_IMPORTS = ("tortoise", "server.models.db", "server.models.bulk", "server.models.locks")


def model_names(tree: ast.Module) -> set[str]:
    """The names a module binds to model classes (`from server.models import Company as M`)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("server.models"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                found = getattr(module, alias.name, None)
                if isinstance(found, type) and issubclass(found, Model):
                    names.add(alias.asname or alias.name)
    return names


def orm_uses(source: str) -> list[tuple[int, str]]:
    """Where a module queries the database itself: (line, what)."""
    tree = ast.parse(source)
    models = model_names(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                modules.append(node.module or "")
                modules += [f"{node.module}.{a.name}" for a in node.names]
            for module in modules:
                if any(module == f or module.startswith(f + ".") for f in FORBIDDEN_IMPORTS):
                    found.append((node.lineno, f"imports {module}"))
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in models
        ):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in models:
                found.append((node.lineno, f"{node.func.id}(...)"))
            if isinstance(node.func, ast.Attribute) and node.func.attr in ORM_METHODS:
                found.append((node.lineno, f".{node.func.attr}(...)"))
        if isinstance(node, ast.Await) and isinstance(node.value, ast.Attribute):
            found.append((node.lineno, f"await ...{node.value.attr} (a relation loaded lazily)"))
    return found


def test_no_module_of_the_api_queries_the_database_itself():
    found = [
        f"server/api/{path.name}:{line}: {what}"
        for path in sorted(API.glob("*.py"))
        for line, what in orm_uses(path.read_text())
    ]
    assert found == []


def test_the_check_sees_every_way_of_reaching_the_orm():
    source = """
from tortoise.transactions import in_transaction
from server.models import db
from server.models import Company as CompanyModel, StaticGroup
from server.models.enums import Area

async def reads(context, model):
    await CompanyModel.get(id=1)
    await StaticGroup.filter(path="/1/").first()
    CompanyModel(name="new")
    await model.groups.all()
    await model.save()
    await model.owner
    CompanyModel._meta
    {}.get("fine"); [].count(1); Area.USERS; dict(a=1).values()
"""
    found = sorted(what for _, what in orm_uses(source))
    assert found == sorted(
        [
            "imports tortoise.transactions",
            "imports tortoise.transactions.in_transaction",
            "imports server.models.db",
            "CompanyModel.get",
            ".filter(...)",
            "StaticGroup.filter",
            ".first(...)",
            "CompanyModel(...)",
            ".all(...)",
            ".save(...)",
            "await ...owner (a relation loaded lazily)",
            "CompanyModel._meta",
        ]
    )
