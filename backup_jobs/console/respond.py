"""How the console answers a refusal: JSON on the API, a page elsewhere."""

from __future__ import annotations

from flask import jsonify, render_template, request


def wants_json() -> bool:
    return request.path.startswith("/api/")


def fail(status: int, message: str, **extra):
    if wants_json():
        return jsonify({"error": message, **extra}), status
    return render_template("message.html", title="Not done", message=message), status
