"""Small Sphinx fixes for the CrowdLens book.

sphinx-thebe adds its inline configuration script to every page twice under
Sphinx 7, and the second copy throws "Identifier 'THEBE_JS_URL' has already been
declared" in the browser console: one copy is registered with filename '' and
one with None, so Sphinx's own de-duplication misses it. Drop such duplicates.
"""


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        filename = getattr(script, "filename", script) or ""
        attributes = getattr(script, "attributes", {}) or {}
        key = (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
