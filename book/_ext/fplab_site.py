"""A small Sphinx extension for the fplab site.

sphinx-thebe 0.3.1 adds its configuration script while the documents are read, when the HTML
builder already exists, so Sphinx 7 lists it twice on every page and the browser logs
"Identifier 'THEBE_JS_URL' has already been declared". Each page here keeps one copy of every
script (same file and attributes).
"""


def _one_copy_of_each_script(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # an inline script is listed once with filename None and once with ""
        name = getattr(script, "filename", script) or ""
        attributes = getattr(script, "attributes", {})
        key = (str(name), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _one_copy_of_each_script)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
