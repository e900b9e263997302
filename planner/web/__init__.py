"""The planner's web pages: server-rendered HTML, small plain scripts, no build step, no CDN.

`pages` fills the templates (`templates/*.html`, `string.Template` with values escaped by the
caller); `static/` holds the scripts, the style sheet and the country outlines the map draws.
"""
