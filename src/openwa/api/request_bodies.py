"""Request bodies that a route reads itself (a media send: JSON or multipart), described
for the OpenAPI document with schemas made from the models that parse them."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

_REF = "#/components/schemas/{model}"
# Schemas no route names in its signature, by component name; `alternatives` adds to it.
_EXTRA: dict[str, dict[str, Any]] = {}


def model_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """The component schemas of `models` and of every model they refer to."""
    _, top = models_json_schema([(model, "validation") for model in models], ref_template=_REF)
    schemas: dict[str, Any] = top.get("$defs", {})
    return schemas


def extra_schemas() -> dict[str, Any]:
    """The components that bodies described by `alternatives` refer to."""
    return copy.deepcopy(_EXTRA)


def alternatives(
    json_model: type[BaseModel], form_model: type[BaseModel], file_field: str, form_name: str
) -> dict[str, Any]:
    """`openapi_extra` for a body given as JSON or as `multipart/form-data` with a file.

    The form's schema (component `form_name`) is the form model's with the file part
    added; every schema they refer to becomes a component, so every `$ref` resolves."""
    schemas = model_schemas(json_model, form_model)
    form = schemas.pop(form_model.__name__)
    form["title"] = form_name
    form["properties"][file_field] = {"type": "string", "format": "binary"}
    form["required"] = [*form.get("required", []), file_field]
    form.pop("additionalProperties", None)  # the file part is not one of the model's
    _EXTRA.update(schemas)
    _EXTRA[form_name] = form
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=json_model.__name__)}},
                "multipart/form-data": {"schema": {"$ref": _REF.format(model=form_name)}},
            },
        }
    }
